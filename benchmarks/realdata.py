"""Development checks on real micrographs (CryoPPP 10028 and 10059): denoising (Eq. 11 SNR, raw vs
Topaz-Denoise vs the shipped DRACO, in one pass and with the 2 x 2 shift ensemble, vs the 16 px block
mean), with a figure of one micrograph per set.

    .venv/bin/python benchmarks/realdata.py [--root ../shared/realdata] [--profile default] [--n 5] \
        [--draco LABEL=CHECKPOINT ...]

``--draco`` adds a DRACO row from another checkpoint (e.g. a run of benchmarks/draco_training_length.py),
one pass, beside the shipped model.

Writes results/<profile>/realdata/realdata_denoising.{csv,md}, realdata_denoising_per_micrograph.csv and
realdata_denoising.png. A folder that is absent is skipped with a message (the project never needs it).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from cryolib.core.atomic import atomic_path, atomic_write_text  # noqa: E402
from cryolib.core.results import results_dir  # noqa: E402
from cryolib.core.errors import CryolibError  # noqa: E402
from cryolib.studies.realdata import (REAL_METHODS, REAL_SETS, denoising_summary, extra_draco_rows,  # noqa: E402
                                      real_denoising_check)

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(ROOT.parent / "shared" / "realdata"))
    parser.add_argument("--profile", default="default")
    parser.add_argument("--n", type=int, default=5, help="micrographs per set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draco", action="append", default=[], metavar="LABEL=CHECKPOINT",
                        help="also score DRACO from this checkpoint under LABEL (repeatable)")
    args = parser.parse_args()
    try:
        methods = REAL_METHODS | extra_draco_rows(args.draco)
    except CryolibError as err:
        parser.error(str(err))
    logging.basicConfig(level=logging.INFO)
    out = results_dir(args.profile) / "realdata"
    rows, examples = [], {}
    for name, diameter in REAL_SETS.items():
        folder = Path(args.root) / name
        if not folder.is_dir():
            print(f"skipping {name}: {folder} is absent")
            continue
        table, ex = real_denoising_check(folder, diameter, n_micrographs=args.n, seed=args.seed, methods=methods)
        rows.append(table)
        examples[name] = ex
    if not rows:
        print("no real data found; nothing written")
        return 0
    per_mic = pd.concat(rows, ignore_index=True)
    summary = denoising_summary(per_mic, methods)
    with atomic_path(out / "realdata_denoising_per_micrograph.csv") as tmp:
        per_mic.to_csv(tmp, index=False)
    with atomic_path(out / "realdata_denoising.csv") as tmp:
        summary.to_csv(tmp, index=False)
    atomic_write_text(out / "realdata_denoising.md", summary.to_markdown(index=False, floatfmt=".2f") + "\n")
    n_cols = max(len(ex["images"]) for ex in examples.values())
    fig, axes = plt.subplots(len(examples), n_cols, figsize=(3.4 * n_cols, 3.4 * len(examples)), squeeze=False)
    for row, (name, ex) in enumerate(examples.items()):
        for col, (label, image) in enumerate(ex["images"].items()):
            crop = image[:384, :384]
            lo, hi = pd.Series(crop.ravel()).quantile([0.01, 0.99])
            axes[row, col].imshow(crop, cmap="gray", vmin=lo, vmax=hi)
            axes[row, col].set_title(f"{name}: {label}", fontsize=8)
            axes[row, col].set_axis_off()
    with atomic_path(out / "realdata_denoising.png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    print(summary.to_markdown(index=False, floatfmt=".2f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
