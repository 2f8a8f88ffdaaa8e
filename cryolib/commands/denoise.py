"""``cryolib denoise``: denoise micrographs with DRACO, the plain MAE, Topaz-Denoise or a low-pass filter.

Examples::

    cryolib denoise --input mics/ --out denoised/                      # DRACO, the shipped denoiser
    cryolib denoise --method lowpass --input 'mics/*.mrc' --out lp/ --pixel-size-A 3.0
    cryolib denoise --method mae --checkpoint runs/default/draco/mae/checkpoint.pt --input mics/ --out mae/

``--method`` is a registered denoiser offered on the command line (:func:`cryolib.denoise.denoiser_names`);
``draco`` (default) uses the shipped denoiser (``cryolib/assets/draco_denoiser.pt``) unless ``--checkpoint``
is given. Writes one MRC per input with the same file name in ``--out`` (same shape, stored dtype and pixel
size; the pixel size comes from the input header, ``--pixel-size-A`` overrides it or supplies it where the header lacks
it, and ``lowpass`` needs it) and ``run.yaml``. Every input, the pixel sizes and the checkpoint are
checked before the first file is written. Notebooks call the same :func:`cryolib.denoise.denoise_files`.
"""

from __future__ import annotations

import argparse
import logging
import time

from cryolib.core.errors import CryolibError

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cryolib denoise``."""
    from cryolib.denoise import denoiser_names
    from cryolib.denoise.registry import DENOISERS

    names = denoiser_names(command_line=True)
    parser.add_argument("--method", default="draco", choices=names,
                        help="; ".join(f"{n}: {DENOISERS[n].description}" for n in names) + " (default draco)")
    parser.add_argument("--input", required=True, metavar="MICS", help="micrograph folder, glob or file")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (one MRC per micrograph)")
    parser.add_argument("--checkpoint", default=None, metavar="CKPT",
                        help="draco/mae: a cryolib checkpoint "
                             "(draco default: the shipped denoiser, cryolib/assets/draco_denoiser.pt)")
    parser.add_argument("--pixel-size-A", type=float, default=None, metavar="X",
                        help="pixel size in Å/px; overrides the input headers (lowpass needs one)")
    parser.add_argument("--shifts", type=int, default=1, metavar="N",
                        help="draco/mae: average N x N passes with the patch grid moved by patch/N px (removes "
                             "patch-grid blocks; N² times the time; default 1, the paper's single pass)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed (the denoisers are deterministic; recorded in run.yaml)")


def main(args: argparse.Namespace) -> int:
    """Run ``cryolib denoise``; returns the exit code."""
    from cryolib.core.provenance import write_run_yaml
    from cryolib.core.reproducibility import seed_everything
    from cryolib.denoise import denoise_files, get_denoiser

    t0 = time.time()
    denoiser = get_denoiser(args.method)
    if args.checkpoint is not None and not denoiser.takes_checkpoint:
        raise CryolibError(f"--checkpoint applies to draco and mae only, not {args.method!r}")
    takes_shifts = "shifts" in denoiser.options
    if args.shifts != 1 and not takes_shifts:
        raise CryolibError(f"--shifts applies to draco and mae only, not {args.method!r}")
    seed_everything(args.seed)
    options = {"shifts": args.shifts} if takes_shifts else {}
    written = denoise_files(args.method, args.input, args.out, checkpoint=args.checkpoint,
                            pixel_size_A=args.pixel_size_A, **options)
    for stem, path in written.items():
        print(f"{stem} -> {path}")
    write_run_yaml(args.out, "denoise", args, t0, n_micrographs=len(written))
    log.info("%s: %d micrographs in %.1f s", args.method, len(written), time.time() - t0)
    return 0
