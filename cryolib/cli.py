"""cryolib: simulate, pretrain, pick, denoise and curate cryo-EM micrographs.

One table of subcommands, each a small module with
``add_args(parser)`` and ``main(args)`` (the Topaz pattern).

Exit codes: 0 success; 2 bad input (a :class:`cryolib.CryolibError` or a bad flag), reported as one
line ``cryolib <command>: error: <message>`` on stderr; 1 an unexpected error, reported as one line
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from typing import NoReturn

from cryolib.core.errors import CryolibError

# name -> (module, one-line help). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("cryolib.commands.simulate", "simulate one dataset analog (micrographs, movies, ground truth)"),
    "pretrain": ("cryolib.commands.pretrain", "pretrain an encoder (objectives: cryoemmae, mae, draco) on micrographs"),
    "pick": ("cryolib.commands.pick", "pick particles on micrographs (cryoemmae, blob or topaz)"),
    "denoise": ("cryolib.commands.denoise", "denoise micrographs (draco, mae, topaz or lowpass)"),
    "curate": ("cryolib.commands.curate", "accept or reject micrographs with a linear probe on a frozen encoder"),
    "evaluate-picks": ("cryolib.commands.evaluate_picks", "score picked coordinates against ground truth"),
}

EXIT_BAD_INPUT = 2
EXIT_UNEXPECTED = 1


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``<prog>: error: <message>``, and exit code 2 (no usage block).

    Subparsers made by ``add_subparsers`` inherit the class, so ``prog`` reads ``cryolib <command>``.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {' '.join(message.split())}\n")


def _add_global_flags(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="log at DEBUG level")
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show the traceback of unexpected errors")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser. Only ``command``'s module is imported (torch is slow to import),
    so ``cryolib --help`` and each subcommand start quickly."""
    parser = OneLineParser(prog="cryolib", description=__doc__.splitlines()[0])
    _add_global_flags(parser, default=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_global_flags(p, default=argparse.SUPPRESS)  # also accepted after the command
        p.set_defaults(_module=module)
        if name == command:
            importlib.import_module(module).add_args(p)
    return parser


def _fail(command: str, message: str, code: int) -> int:
    print(f"cryolib {command}: {' '.join(message.split())}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run ``cryolib`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help (0) or a bad flag (2, already reported in one line)
        return done.code if isinstance(done.code, int) else EXIT_BAD_INPUT
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except CryolibError as err:
        return _fail(args.command, f"error: {err}", EXIT_BAD_INPUT)
    except Exception as err:  # noqa: BLE001  (the one place that reports unexpected errors)
        if args.debug:
            traceback.print_exc()
            return EXIT_UNEXPECTED
        return _fail(args.command, f"unexpected error: {type(err).__name__}: {err} "
                     "(rerun with --debug for the traceback)", EXIT_UNEXPECTED)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
