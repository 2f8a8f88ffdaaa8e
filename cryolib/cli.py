"""cryolib: simulate, pretrain, pick, denoise and curate cryo-EM micrographs.

One table of subcommands, each a small module with
``add_args(parser)`` and ``main(args)`` (the Topaz pattern).

Errors of type :class:`cryolib.CryolibError` print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from cryolib.core.errors import CryolibError

# name -> (module, one-line help). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("cryolib.commands.simulate", "simulate one dataset analog (micrographs, movies, ground truth)"),
    "pretrain": ("cryolib.commands.pretrain", "pretrain an encoder (MAE objective) on micrographs"),
    "pick": ("cryolib.commands.pick", "pick particles on micrographs (cryoemmae, blob or topaz)"),
    "evaluate-picks": ("cryolib.commands.evaluate_picks", "score picked coordinates against ground truth"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser. Only ``command``'s module is imported (torch is slow to import),
    so ``cryolib --help`` and each subcommand start quickly."""
    parser = argparse.ArgumentParser(prog="cryolib", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name == command:
            importlib.import_module(module).add_args(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except CryolibError as err:
        print(f"cryolib {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
