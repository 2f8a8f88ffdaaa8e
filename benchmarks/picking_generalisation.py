"""The detector's generalisation check: on micrographs no fine-tuning saw (the simulated ``generalisation``
analogs, and the real CryoPPP folders when present), ``cryolib pick --method detector --reference-coords``
against Topaz trained on the same reference, Topaz pretrained, blob and Cryo-EMMAE
(:mod:`cryolib.studies.picking_generalisation`).

    .venv/bin/python benchmarks/picking_generalisation.py [--profile default] [--realdata ../shared/realdata]

Writes results/<profile>/tables/picking_generalisation.{csv,md} (per dataset and method) and
picking_generalisation_summary.md (F1 per dataset, mean, and whether the detector leads). A real folder
that is absent is skipped with a message: the project never needs it.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from cryolib.core.atomic import atomic_write_text
from cryolib.core.profiles import get_profile
from cryolib.core.results import results_dir, run_dir, save_table
from cryolib.io.datasets import dataset_dir, datasets_with_role, load_dataset
from cryolib.studies import picking_generalisation as pg
from cryolib.studies.realdata import REAL_SETS

ROOT = Path(__file__).resolve().parent.parent


def _ordered(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    table["order"] = table["method"].map({m: i for i, m in enumerate(pg.METHODS)})
    return table.sort_values(["dataset", "order"], kind="stable").drop(columns="order").reset_index(drop=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--realdata", default=str(ROOT.parent / "shared" / "realdata"))
    parser.add_argument("--only", nargs="*", default=None, help="dataset names to run (default: all)")
    parser.add_argument("--methods", nargs="*", default=list(pg.METHODS), choices=pg.METHODS,
                        help="methods to run; rows of the other methods already in the table are kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    pk = get_profile(args.profile).picking
    datasets = [load_dataset(dataset_dir(n, args.profile)) for n in datasets_with_role("generalisation")]
    for name, diameter in REAL_SETS.items():
        folder = Path(args.realdata) / name
        if folder.is_dir():
            datasets.append(load_dataset(folder, diameter_px=diameter, name=name))
        else:
            print(f"{folder} not found: skipping {name} (real data is optional)")
    if args.only:
        datasets = [ds for ds in datasets if ds.name in args.only]
    runs = run_dir(args.profile) / "picking_generalisation"
    old = results_dir(args.profile) / "tables" / "picking_generalisation.csv"
    kept = pd.read_csv(old) if old.is_file() else pd.DataFrame(columns=["dataset", "method"])
    rows = kept[~kept["method"].isin(args.methods)].to_dict("records")  # other methods' rows stay
    for ds in datasets:
        rows += pg.check_dataset(ds, runs, seed=args.seed, methods=tuple(args.methods),
                                 topaz_schedule=(pk.topaz_epochs, pk.topaz_epoch_size, pk.topaz_minibatch))
        save_table(_ordered(rows), "picking_generalisation", args.profile)  # after each dataset: a long run keeps its part
    table = _ordered(rows)
    lead = pg.detector_leads(table)
    wide = pg.summary(table)
    text = (f"F1 (overlap60) per dataset; the reference micrograph is not scored. Operating points: "
            f"{json.dumps(pg.OPERATING_POINT)}.\n\n{wide.round(3).to_markdown()}\n\n{json.dumps(lead)}\n")
    atomic_write_text(results_dir(args.profile) / "tables" / "picking_generalisation_summary.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
