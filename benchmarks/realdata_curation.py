"""Development check on real micrographs (CryoPPP 10028 and 10059): the shipped curation head
(``cryolib curate``'s default) on every micrograph, with its likeliest class and whether each
micrograph lies inside the head's training range.

    .venv/bin/python benchmarks/realdata_curation.py [--root ../shared/realdata] [--profile default] \
        [--checkpoint HEAD.pt]

CryoPPP's micrographs are curated data, so a head that works on real data accepts nearly all of them.
Writes results/<profile>/realdata/realdata_curation.{csv,md} (per set) and
realdata_curation_per_micrograph.csv. A folder that is absent is skipped with a message.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from cryolib.core.atomic import atomic_path, atomic_write_text
from cryolib.core.results import results_dir
from cryolib.curate.head import load_curation_head
from cryolib.studies.realdata import REAL_SETS, curation_summary, real_curation_check

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(ROOT.parent / "shared" / "realdata"))
    parser.add_argument("--profile", default="default")
    parser.add_argument("--checkpoint", default=None, help="curation head file (default: the shipped one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    head = load_curation_head(args.checkpoint)
    rows = []
    for name in REAL_SETS:
        folder = Path(args.root) / name
        if not folder.is_dir():
            print(f"skipping {name}: {folder} is absent")
            continue
        rows.append(real_curation_check(folder, head))
    if not rows:
        print("no real data found; nothing written")
        return 0
    per_mic = pd.concat(rows, ignore_index=True)
    summary = curation_summary(per_mic).assign(head=head.name)
    out = results_dir(args.profile) / "realdata"
    with atomic_path(out / "realdata_curation_per_micrograph.csv") as tmp:
        per_mic.to_csv(tmp, index=False)
    with atomic_path(out / "realdata_curation.csv") as tmp:
        summary.to_csv(tmp, index=False)
    atomic_write_text(out / "realdata_curation.md", summary.to_markdown(index=False, floatfmt=".3g") + "\n")
    print(summary.to_markdown(index=False, floatfmt=".3g"))
    print(per_mic["out_of_range"].value_counts().to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
