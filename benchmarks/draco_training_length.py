"""DRACO's zero-shot denoising against training length (and a smaller patch), beside Topaz-Denoise, the
low-pass filter and the best-case Gaussian on the same micrographs (:mod:`cryolib.studies.draco_training_length`).

    .venv/bin/python benchmarks/draco_training_length.py [--profile default] [--epochs 4 16 64 256 1024] \
        [--micrographs 2]

Trains DRACO-B for each length, the profile's patch-size variant (patch 8 on 64 px crops at default, the
same steps as the 64-epoch run) and its recipe variants (4x lr, every tile, no warm-up; each for the profile's
own length), resumably under runs/<profile>/draco/. The 16 px block mean is scored beside them. Needs
notebook 01's analogs (and reuses notebook 04's warm-up when it is there). Writes
results/<profile>/tables/draco_training_length.{csv,md} (per analog and method),
draco_training_length_claims.{csv,md}, draco_training_length_frc.{csv,md} (mean FRC per ring),
draco_training_length_curve.{csv,md} (mean SNRs per length and peer), draco_training_length_trend.{csv,md}
(gain per doubling of the epochs and the gap to Topaz-Denoise), draco_training_length_curation.{csv,md} (notebook
06's linear probe on each length's encoder, held-out curation analogs), figures/draco_training_length_frc.png and
figures/draco_training_length_snr.png. Takes about 70 minutes at the default profile on 2 idle cores
(the 1024-epoch run alone about 35).
"""

from __future__ import annotations

import argparse
import logging
import time

import pandas as pd

from cryolib.core.profiles import get_profile
from cryolib.core.results import save_figure, save_table
from cryolib.studies import draco_training_length as tl
from cryolib.studies.draco_curation import build_curation_set
from cryolib.studies.draco_denoising import load_study
from cryolib.studies.plots_denoising import frc_figure, length_figure


def curation_table(profile: str, checkpoints: dict, seed: int) -> None:
    """Notebook 06's linear probe on each length's frozen encoder -> tables/draco_training_length_curation."""
    curation = tl.curation_by_length(build_curation_set(profile, seed=seed), checkpoints, seed=seed)
    save_table(curation, "draco_training_length_curation", profile)
    print(curation.round(3).to_string(index=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--epochs", type=int, nargs="*", default=None,
                        help="DRACO epochs (default: the profile's sweep)")
    parser.add_argument("--micrographs", type=int, default=2, help="micrographs per Table 2 analog")
    parser.add_argument("--seed", type=int, default=0)
    curation = parser.add_mutually_exclusive_group()
    curation.add_argument("--no-curation", action="store_true",
                          help="skip the curation probe per length (it builds notebook 06's curation set when missing)")
    curation.add_argument("--curation-only", action="store_true",
                          help="only the curation probe per length (after notebook 06's curation set changed); "
                               "the denoising tables and figures stay as they are")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    checkpoints = tl.train_lengths(args.profile, args.epochs, seed=args.seed)
    if args.curation_only:
        curation_table(args.profile, checkpoints, args.seed)
        return 0
    variants, variant_epochs, pairs = {}, {}, []
    for patch, crop, epochs in tl.PATCH_VARIANTS.get(args.profile, ()):
        label = tl.patch_label(patch, crop, epochs)
        variants[label] = tl.train_patch_variant(args.profile, patch, crop, epochs, seed=args.seed)
        variant_epochs[label] = epochs
        same = tl.same_steps_length(args.profile, crop, epochs)
        if same in checkpoints:
            pairs.append((label, tl.length_label(same)))
    own = get_profile(args.profile).draco.epochs  # the recipe variants train the profile's own length
    for variant in tl.RECIPE_VARIANTS.get(args.profile, {}):
        label = tl.recipe_label(variant, own)
        variants[label] = tl.train_recipe_variant(args.profile, variant, seed=args.seed)
        variant_epochs[label] = own
        if own in checkpoints:
            pairs.append((label, tl.length_label(own)))
    t1 = time.perf_counter()
    study = load_study(args.profile, seed=args.seed, n_micrographs=args.micrographs)
    rows, frc = tl.score_lengths(study, checkpoints, variants=variants)
    summary = tl.length_summary(rows, checkpoints, variant_epochs)
    frc_mean = tl.frc_summary(frc)
    claims = pd.concat([tl.length_claims(summary, checkpoints),
                        *(tl.variant_claims(summary, frc_mean, v, r) for v, r in pairs)], ignore_index=True)
    save_table(summary, "draco_training_length", args.profile)
    save_table(claims, "draco_training_length_claims", args.profile)
    save_table(frc_mean, "draco_training_length_frc", args.profile)
    curve = tl.length_curve(summary, checkpoints)
    trend = tl.length_trend(curve)
    save_table(curve, "draco_training_length_curve", args.profile)
    save_table(trend, "draco_training_length_trend", args.profile)
    save_figure(length_figure(curve, tl.METRIC_LABELS), "draco_training_length_snr", args.profile)
    if not args.no_curation:
        curation_table(args.profile, checkpoints, args.seed)
    methods = [*tl.BASELINES, *(tl.length_label(e) for e in sorted(checkpoints)), *variants]
    save_figure(frc_figure(frc_mean, methods), "draco_training_length_frc", args.profile)
    print(summary.round(2).to_string(index=False))
    print(claims.to_string(index=False))
    print(trend.round(2).to_string(index=False))
    for m in methods:
        print(f"{m}: mean FRC above 1/16 cycle/px {tl.mean_frc_above(frc_mean, m, 1 / 16):.3f}")
    print(f"training {t1 - t0:.0f} s, scoring {time.perf_counter() - t1:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
