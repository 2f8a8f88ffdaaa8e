"""How DRACO's zero-shot denoising changes with training length (issue 13: why DRACO trails Topaz-Denoise here).

The paper trains DRACO-B for 200 + 400 epochs on 270,000 micrographs (§5); the default profile can
afford 2 + 4 epochs on 36 micrographs (notebook 04). This study trains the B size of the profile
(``DracoSizes.model_b``) for several DRACO lengths after notebook 04's own warm-up (shared and resumed,
so the profile's length reproduces notebook 04's DRACO-B), on the same tiles, seed and lr schedule, and
scores every checkpoint on the Table 2 analogs beside Raw, the low-pass filter, Topaz-Denoise and the
best-case Gaussian in the same run:

* Eq. 11 SNR (20 ground-truth region pairs per micrograph), true SNR over the whole image and in the
  particle band (as Table 2, :func:`cryolib.studies.draco_denoising.score_outputs`);
* the Fourier ring correlation of each output with the noise-free image
  (:func:`cryolib.evaluate.frc.fourier_ring_correlation`): per spatial frequency, how much of the
  output is signal. It shows where DRACO's output stops carrying detail.

Checkpoints: ``runs/<profile>/draco/length_<E>ep/`` (resumable). ``benchmarks/draco_training_length.py``
runs it and writes the tables and the figure.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from cryolib.core.errors import CryolibError
from cryolib.core.profiles import get_profile
from cryolib.core.results import run_dir
from cryolib.denoise import denoise_micrograph
from cryolib.evaluate.frc import fourier_ring_correlation
from cryolib.io.micrographs import read_micrograph
from cryolib.studies.draco_denoising import (GAUSSIAN, LOWPASS, RAW, TOPAZ, DenoisingStudy, _pixel_size, denoise_all,
                                             eq11_pairs, score_outputs, study_micrographs, table2_summary)
from cryolib.studies.draco_pretraining import pretraining_datasets, pretraining_triplets, train_draco

log = logging.getLogger(__name__)

__all__ = ["LENGTHS", "BASELINES", "length_label", "train_lengths", "score_lengths", "length_summary",
           "frc_summary", "length_claims", "mean_frc_above"]

#: DRACO epochs (after the warm-up) per profile; the profile's own length comes first.
LENGTHS: dict[str, tuple[int, ...]] = {"smoke": (1, 2), "default": (4, 16, 64, 256), "full": (400,)}
#: The peers scored on the same micrographs.
BASELINES = (RAW, LOWPASS, TOPAZ, GAUSSIAN)
N_RINGS = 16  # FRC rings from 0 to Nyquist (each 1/32 cycle/px wide)


def length_label(epochs: int) -> str:
    """The method label of a DRACO-B run of ``epochs`` DRACO epochs."""
    return f"DRACO-B, {int(epochs)} epochs"


def train_lengths(profile: str, epochs: Sequence[int] | None = None, data_root: str | Path | None = None,
                  runs_root: str | Path | None = None, seed: int = 0, progress: bool = True) -> dict[int, Path]:
    """DRACO-B of the profile trained for each of ``epochs`` (default :data:`LENGTHS`) DRACO epochs after
    notebook 04's warm-up -> {epochs: checkpoint}. Everything else is the profile's (tiles, batch, lr)."""
    prof = get_profile(profile)
    lengths = tuple(LENGTHS.get(profile, (prof.draco.epochs,)) if epochs is None else epochs)
    if not lengths or any(int(e) < 1 for e in lengths):
        raise CryolibError(f"training lengths must be positive epoch counts, got {lengths}")
    sizes = prof.draco
    train_set, val_set = pretraining_triplets(pretraining_datasets(profile, data_root), sizes, seed=seed)
    root = run_dir(profile, runs_root) / "draco"
    warmup = root / f"warmup_{sizes.model_b}_{sizes.warmup_epochs}ep"  # notebook 04's (reused when finished)
    return {int(e): train_draco(train_set, val_set, sizes, sizes.model_b, root / f"length_{int(e)}ep",
                                warmup_dir=warmup, epochs=int(e), seed=seed, device=prof.device, progress=progress)
            for e in lengths}


def score_lengths(study: DenoisingStudy, checkpoints: Mapping[int, str | Path], n_rings: int = N_RINGS
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every checkpoint and :data:`BASELINES` on the study's micrographs -> (rows, frc).

    rows: one per micrograph and method, as :func:`cryolib.studies.draco_denoising.table2`; frc: one
    per micrograph, method and ring (:func:`cryolib.evaluate.frc.fourier_ring_correlation` against the
    noise-free image).
    """
    if not checkpoints:
        raise CryolibError("no DRACO checkpoints to score")
    rows, frc = [], []
    for name, ds in study.datasets.items():
        for path in study_micrographs(ds, study.n_micrographs):
            image = read_micrograph(path)[0]
            clean = read_micrograph(ds.path_of(path.stem, "clean"))[0]
            outputs = denoise_all(study, image, _pixel_size(path, ds), clean, methods=BASELINES)
            outputs |= {length_label(e): denoise_micrograph("draco", image, checkpoint=Path(ck))
                        for e, ck in sorted(checkpoints.items())}
            pairs = eq11_pairs(clean, ds, path.stem, study.n_pairs, study.seed)
            rows += [{"dataset": name, "micrograph": path.stem, **r}
                     for r in score_outputs(outputs, clean, ds.diameter_px, pairs)]
            for label, out in outputs.items():
                table = fourier_ring_correlation(out, clean, n_rings)
                frc.append(table.assign(dataset=name, micrograph=path.stem, method=label))
    return pd.DataFrame(rows), pd.concat(frc, ignore_index=True)


def length_summary(rows: pd.DataFrame, checkpoints: Mapping[int, str | Path]) -> pd.DataFrame:
    """Per analog and method: Eq. 11 SNR (pooled over pairs), true SNR, band SNR (dB), and ``epochs``
    (NaN for the baselines); Table 2's paper column is dropped (these are not its rows)."""
    out = table2_summary(rows).drop(columns="paper_snr_eq11_db")
    epochs = {length_label(e): int(e) for e in checkpoints}
    out.insert(2, "epochs", out["method"].map(epochs))
    return out


def frc_summary(frc: pd.DataFrame) -> pd.DataFrame:
    """Mean FRC per method and ring over every micrograph of every analog."""
    return (frc.groupby(["method", "ring", "low_cycles_per_px", "high_cycles_per_px"], sort=False)["frc"]
            .mean().reset_index())


def length_claims(summary: pd.DataFrame, checkpoints: Mapping[int, str | Path]) -> pd.DataFrame:
    """What the sweep shows, each as numbers: whether longer training raises DRACO's SNRs, and whether
    the longest run beats Topaz-Denoise and the low-pass filter on each analog (Eq. 11 and true SNR)."""
    lengths = sorted(int(e) for e in checkpoints)
    if len(lengths) < 2:
        raise CryolibError("the sweep needs at least two training lengths")
    first, last = length_label(lengths[0]), length_label(lengths[-1])
    rows = []
    for metric in ("snr_eq11_db", "true_snr_db", "band_snr_db"):
        wide = summary.pivot(index="dataset", columns="method", values=metric)
        gain = wide[last] - wide[first]
        rows.append({"claim": f"{lengths[-1]} epochs raise {metric} over {lengths[0]}",
                     "our_numbers": f"{int((gain > 0).sum())}/{len(gain)} analogs, mean {gain.mean():+.2f} dB",
                     "supported": bool((gain > 0).all())})
        for peer in (TOPAZ, LOWPASS):
            diff = wide[last] - wide[peer]
            rows.append({"claim": f"{lengths[-1]} epochs beat {peer} on {metric}",
                         "our_numbers": f"{int((diff > 0).sum())}/{len(diff)} analogs, mean {diff.mean():+.2f} dB",
                         "supported": bool((diff > 0).all())})
    return pd.DataFrame(rows)


def mean_frc_above(frc_mean: pd.DataFrame, method: str, cycles_per_px: float) -> float:
    """Mean FRC of ``method`` over the rings that start at or above ``cycles_per_px``."""
    sel = frc_mean[(frc_mean["method"] == method) & (frc_mean["low_cycles_per_px"] >= cycles_per_px)]
    if sel.empty:
        raise CryolibError(f"no FRC rings of {method!r} at or above {cycles_per_px} cycles/px")
    return float(np.nanmean(sel["frc"]))
