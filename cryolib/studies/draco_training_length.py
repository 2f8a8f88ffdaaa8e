"""How DRACO's zero-shot denoising changes with training length (issue 13: why DRACO trails Topaz-Denoise here).

The paper trains DRACO-B for 200 + 400 epochs on 270,000 micrographs (§5); the default profile
affords 2 + 64 epochs on 36 micrographs (notebook 04; it trained 2 + 4 before this sweep). This study
trains the B size of the profile (``DracoSizes.model_b``) for several DRACO lengths after notebook 04's
own warm-up (shared and resumed, so the profile's own length reproduces notebook 04's DRACO-B), on the
same tiles, seed and lr schedule, and
scores every checkpoint on the Table 2 analogs beside Raw, the low-pass filter, Topaz-Denoise and the
best-case Gaussian in the same run:

* Eq. 11 SNR (20 ground-truth region pairs per micrograph), true SNR over the whole image and in the
  particle band (as Table 2, :func:`cryolib.studies.draco_denoising.score_outputs`);
* the Fourier ring correlation of each output with the noise-free image
  (:func:`cryolib.evaluate.frc.fourier_ring_correlation`): per spatial frequency, how much of the
  output is signal. It shows where DRACO's output stops carrying detail.

A second question: is the limit the 16 px patch? :func:`train_patch_variant` trains the same encoder and
decoder with a smaller patch on proportionally smaller crops (patch 8 on 64 px crops: the same 8 x 8
token grid, so the same compute per crop), with 4x the crops per micrograph over 1/4 of the epochs, so
it takes the same steps and sees the same pixels as the profile's run of 4x those epochs, after its own
plain-MAE warm-up of the profile's length.

A third: is it the recipe? :func:`train_recipe_variant` trains the profile's own length with one change to
its DRACO stage (:data:`RECIPE_VARIANTS`): 4x the learning rate, every tile of every micrograph (2x the data
at the default profile), or no warm-up (random initialisation). The runs with a warm-up start from notebook 04's.
The 16 px block mean (:func:`cryolib.denoise.classical.block_mean`) is scored as a baseline: it is DRACO's
patch mosaic with nothing learned inside a patch.

A fourth: does longer training help the encoder as a curation backbone? :func:`curation_by_length` trains
notebook 06's linear probe on each length's frozen encoder and scores it on the held-out curation analogs.

Checkpoints: ``runs/<profile>/draco/length_<E>ep/`` and ``recipe_<slug>_<E>ep/`` (resumable).
``benchmarks/draco_training_length.py`` runs it and writes the tables and the figure.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from cryolib.core.errors import CryolibError
from cryolib.core.profiles import get_profile
from cryolib.core.results import run_dir
from cryolib.curate.probe import METRICS
from cryolib.denoise import denoise_micrograph
from cryolib.evaluate.frc import fourier_ring_correlation
from cryolib.io.micrographs import read_micrograph
from cryolib.models.vit import get_config
from cryolib.studies.draco_curation import CurationData, curation_metrics
from cryolib.studies.draco_denoising import (BLOCK, GAUSSIAN, LOWPASS, RAW, TOPAZ, DenoisingStudy, _pixel_size,
                                             denoise_all, eq11_pairs, score_outputs, study_micrographs, table2_summary)
from cryolib.studies.draco_pretraining import (pretraining_datasets, pretraining_triplets, train_draco, train_length,
                                               warm_up, warmup_run_dir)

log = logging.getLogger(__name__)

__all__ = ["LENGTHS", "PATCH_VARIANTS", "RecipeVariant", "RECIPE_VARIANTS", "BASELINES", "length_label",
           "patch_label", "recipe_label", "train_lengths", "train_patch_variant", "train_recipe_variant",
           "same_steps_length", "score_lengths", "length_summary", "variant_claims", "frc_summary", "length_claims",
           "length_curve", "length_trend", "mean_frc_above", "METRIC_LABELS", "curation_by_length"]

#: DRACO epochs (after the warm-up) per profile; each sweep holds the profile's own length (default 64).
LENGTHS: dict[str, tuple[int, ...]] = {"smoke": (1, 2), "default": (4, 16, 64, 256, 1024), "full": (400,)}
#: (patch px, crop px, DRACO epochs) of the patch-size variant per profile (see the module docstring).
PATCH_VARIANTS: dict[str, tuple[tuple[int, int, int], ...]] = {"smoke": ((8, 128, 1),), "default": ((8, 64, 16),),
                                                              "full": ()}


class RecipeVariant(NamedTuple):
    """One change to the profile's DRACO stage: ``slug`` names its run folder, ``sizes`` replaces
    :class:`~cryolib.core.profiles.DracoSizes` fields, ``warmup=False`` starts from a random initialisation."""

    slug: str
    sizes: dict
    warmup: bool = True


#: Recipe variants per profile (label -> variant), each trained for the profile's own DRACO length.
RECIPE_VARIANTS: dict[str, dict[str, RecipeVariant]] = {
    "smoke": {"no warm-up": RecipeVariant("nowarmup", {}, warmup=False)},
    "default": {"4x lr": RecipeVariant("lr4x", {"base_lr": 4e-2}),
                "every tile (2x data)": RecipeVariant("alltiles", {"max_tiles_per_micrograph": 0}),
                "no warm-up": RecipeVariant("nowarmup", {}, warmup=False)},
    "full": {}}
#: The peers scored on the same micrographs.
BASELINES = (RAW, LOWPASS, TOPAZ, GAUSSIAN, BLOCK)
N_RINGS = 16  # FRC rings from 0 to Nyquist (each 1/32 cycle/px wide)
SNR_METRICS = ("snr_eq11_db", "true_snr_db", "band_snr_db")  # the claims' columns (dB)
#: Axis labels of :data:`SNR_METRICS` (mean over the Table 2 analogs).
METRIC_LABELS = {"snr_eq11_db": "Eq. 11 SNR (dB)", "true_snr_db": "true SNR, whole image (dB)",
                 "band_snr_db": "true SNR, particle band (dB)"}


def length_label(epochs: int) -> str:
    """The method label of a DRACO-B run of ``epochs`` DRACO epochs."""
    return f"DRACO-B, {int(epochs)} epochs"


def patch_label(patch_px: int, crop_px: int, epochs: int) -> str:
    """The method label of a patch-size variant."""
    return f"DRACO-B, patch {int(patch_px)} ({int(crop_px)} px crops), {int(epochs)} epochs"


def recipe_label(variant: str, epochs: int) -> str:
    """The method label of a recipe variant (a key of :data:`RECIPE_VARIANTS`)."""
    return f"DRACO-B, {variant}, {int(epochs)} epochs"


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
    return {int(e): train_length(train_set, val_set, sizes, root, e, seed=seed, device=prof.device, progress=progress)
            for e in lengths}


def train_patch_variant(profile: str, patch_px: int, crop_px: int, epochs: int, data_root: str | Path | None = None,
                        runs_root: str | Path | None = None, seed: int = 0, progress: bool = True) -> Path:
    """The profile's B size with ``patch_px`` patches on ``crop_px`` crops (module docstring), after its own
    plain-MAE warm-up -> the DRACO checkpoint in ``runs/<profile>/draco/patch<P>_<C>px_<E>ep/``."""
    prof = get_profile(profile)
    sizes = prof.draco
    if crop_px <= 0 or patch_px <= 0 or crop_px % patch_px or sizes.tile_px % crop_px or int(epochs) < 1:
        raise CryolibError(f"need a crop that divides the profile's {sizes.tile_px} px crops into whole patches and "
                           f"epochs >= 1; got patch {patch_px}, crop {crop_px}, epochs {epochs}")
    name = f"{sizes.model_b}-p{int(patch_px)}"
    cfg = get_config(sizes.model_b, name=name, patch_size=int(patch_px), img_size=int(crop_px))
    per_tile = (sizes.tile_px // int(crop_px)) ** 2
    small = dataclasses.replace(sizes, tile_px=int(crop_px),
                                max_tiles_per_micrograph=sizes.max_tiles_per_micrograph * per_tile)
    train_set, val_set = pretraining_triplets(pretraining_datasets(profile, data_root), small, seed=seed)
    root = run_dir(profile, runs_root) / "draco"
    return train_draco(train_set, val_set, small, cfg, root / f"patch{int(patch_px)}_{int(crop_px)}px_{int(epochs)}ep",
                       warmup_dir=root / f"warmup_{name}_{crop_px}px_{sizes.warmup_epochs}ep", epochs=int(epochs),
                       seed=seed, device=prof.device, progress=progress)


def train_recipe_variant(profile: str, variant: str, data_root: str | Path | None = None,
                         runs_root: str | Path | None = None, seed: int = 0, progress: bool = True) -> Path:
    """The profile's DRACO-B with one recipe change (``variant``, a key of ``RECIPE_VARIANTS[profile]``),
    for the profile's own DRACO epochs, from notebook 04's warm-up (or none) -> the DRACO checkpoint in
    ``runs/<profile>/draco/recipe_<slug>_<E>ep/``."""
    prof = get_profile(profile)
    choices = RECIPE_VARIANTS.get(profile, {})
    if variant not in choices:
        raise CryolibError(f"unknown recipe variant {variant!r} for profile {profile!r}; choose from {sorted(choices)}")
    spec, base = choices[variant], prof.draco
    sizes = dataclasses.replace(base, **spec.sizes)
    datasets = pretraining_datasets(profile, data_root)
    root = run_dir(profile, runs_root) / "draco"
    init = None
    if spec.warmup:  # notebook 04's warm-up, on the profile's own tiles and lr (reused when finished)
        train0, val0 = pretraining_triplets(datasets, base, seed=seed)
        init = warm_up(train0, val0, base, base.model_b, warmup_run_dir(root, base, base.model_b), seed=seed,
                       device=prof.device, progress=progress)
    train_set, val_set = pretraining_triplets(datasets, sizes, seed=seed)
    return train_draco(train_set, val_set, sizes, sizes.model_b, root / f"recipe_{spec.slug}_{sizes.epochs}ep",
                       init_from=init, warmup=spec.warmup, seed=seed, device=prof.device, progress=progress)


def score_lengths(study: DenoisingStudy, checkpoints: Mapping[int, str | Path], n_rings: int = N_RINGS,
                  variants: Mapping[str, str | Path] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every checkpoint (and each of ``variants``: label -> checkpoint) and :data:`BASELINES` on the
    study's micrographs -> (rows, frc).

    rows: one per micrograph and method, as :func:`cryolib.studies.draco_denoising.table2`; frc: one
    per micrograph, method and ring (:func:`cryolib.evaluate.frc.fourier_ring_correlation` against the
    noise-free image).
    """
    if not checkpoints:
        raise CryolibError("no DRACO checkpoints to score")
    networks = {length_label(e): ck for e, ck in sorted(checkpoints.items())} | dict(variants or {})
    rows, frc = [], []
    for name, ds in study.datasets.items():
        for path in study_micrographs(ds, study.n_micrographs):
            image = read_micrograph(path)[0]
            clean = read_micrograph(ds.path_of(path.stem, "clean"))[0]
            outputs = denoise_all(study, image, _pixel_size(path, ds), clean, methods=BASELINES)
            outputs |= {label: denoise_micrograph("draco", image, checkpoint=Path(ck))
                        for label, ck in networks.items()}
            pairs = eq11_pairs(clean, ds, path.stem, study.n_pairs, study.seed)
            rows += [{"dataset": name, "micrograph": path.stem, **r}
                     for r in score_outputs(outputs, clean, ds.diameter_px, pairs)]
            for label, out in outputs.items():
                table = fourier_ring_correlation(out, clean, n_rings)
                frc.append(table.assign(dataset=name, micrograph=path.stem, method=label))
    return pd.DataFrame(rows), pd.concat(frc, ignore_index=True)


def same_steps_length(profile: str, crop_px: int, epochs: int) -> int:
    """The DRACO epochs of the profile's own crops that take as many steps as ``epochs`` of a
    :func:`train_patch_variant` on ``crop_px`` crops (4x for 64 px crops at 128 px)."""
    return int(epochs) * (get_profile(profile).draco.tile_px // int(crop_px)) ** 2


def length_summary(rows: pd.DataFrame, checkpoints: Mapping[int, str | Path],
                   variant_epochs: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Per analog and method: Eq. 11 SNR (pooled over pairs), true SNR, band SNR (dB), and ``epochs``
    (``variant_epochs`` for the variants' labels; NaN for the baselines); Table 2's paper column is
    dropped (these are not its rows)."""
    out = table2_summary(rows).drop(columns="paper_snr_eq11_db")
    epochs = {length_label(e): int(e) for e in checkpoints} | dict(variant_epochs or {})
    out.insert(2, "epochs", out["method"].map(epochs))
    return out


def _per_analog_claim(claim: str, diff: pd.Series) -> dict:
    """A claims row for "ours minus theirs > 0 on every analog": ``diff`` (dB) per analog."""
    return {"claim": claim, "our_numbers": f"{int((diff > 0).sum())}/{len(diff)} analogs, mean {diff.mean():+.2f} dB",
            "supported": bool((diff > 0).all())}


def variant_claims(summary: pd.DataFrame, frc_mean: pd.DataFrame, variant: str, reference: str,
                   above_cycles_per_px: float = 1 / 16) -> pd.DataFrame:
    """Whether ``variant`` (e.g. patch 8) beats ``reference`` (the patch-16 run of the same steps) on each
    SNR on every analog, and on the mean FRC above ``above_cycles_per_px`` (default: the 16 px patch frequency)."""
    rows = []
    for metric in SNR_METRICS:
        wide = summary.pivot(index="dataset", columns="method", values=metric)
        rows.append(_per_analog_claim(f"{variant} beats {reference} on {metric}", wide[variant] - wide[reference]))
    ours, theirs = (mean_frc_above(frc_mean, m, above_cycles_per_px) for m in (variant, reference))
    rows.append({"claim": f"{variant} carries more detail above {above_cycles_per_px:.4g} cycle/px than {reference}",
                 "our_numbers": f"mean FRC {ours:.3f} vs {theirs:.3f}", "supported": bool(ours > theirs)})
    return pd.DataFrame(rows)


def frc_summary(frc: pd.DataFrame) -> pd.DataFrame:
    """Mean FRC per method and ring over every micrograph of every analog."""
    return (frc.groupby(["method", "ring", "low_cycles_per_px", "high_cycles_per_px"], sort=False)["frc"]
            .mean().reset_index())


def length_claims(summary: pd.DataFrame, checkpoints: Mapping[int, str | Path]) -> pd.DataFrame:
    """What the sweep shows, each as numbers: whether longer training raises DRACO's SNRs, and whether
    the longest run beats Topaz-Denoise and the low-pass filter on each analog (Eq. 11, true SNR, band SNR),
    and (when scored) the 16 px block mean on the true SNRs. Not on Eq. 11: a background box inside one
    block has zero variance, so the block mean's Eq. 11 is +inf there."""
    lengths = sorted(int(e) for e in checkpoints)
    if len(lengths) < 2:
        raise CryolibError("the sweep needs at least two training lengths")
    first, last = length_label(lengths[0]), length_label(lengths[-1])
    rows = []
    for metric in SNR_METRICS:
        wide = summary.pivot(index="dataset", columns="method", values=metric)
        rows.append(_per_analog_claim(f"{lengths[-1]} epochs raise {metric} over {lengths[0]}",
                                      wide[last] - wide[first]))
        peers = (TOPAZ, LOWPASS) + ((BLOCK,) if metric != "snr_eq11_db" and BLOCK in wide.columns else ())
        rows += [_per_analog_claim(f"{lengths[-1]} epochs beat {peer} on {metric}", wide[last] - wide[peer])
                 for peer in peers]
    return pd.DataFrame(rows)


def length_curve(summary: pd.DataFrame, checkpoints: Mapping[int, str | Path]) -> pd.DataFrame:
    """Mean over the analogs of each SNR (dB) for every DRACO length (ascending ``epochs``) and every baseline
    of :data:`BASELINES` in ``summary`` (``epochs`` NaN): the numbers behind the training-length figure.
    A mean with a +inf analog (the block mean's Eq. 11) stays +inf."""
    lengths = [length_label(e) for e in sorted(int(e) for e in checkpoints)]
    methods = [m for m in (*lengths, *BASELINES) if m in set(summary["method"])]
    if not any(m in lengths for m in methods):
        raise CryolibError("the summary holds none of the sweep's DRACO lengths")
    sub = summary[summary["method"].isin(methods)]
    out = sub.groupby("method", sort=False)[list(SNR_METRICS)].mean()
    out.insert(0, "epochs", sub.groupby("method", sort=False)["epochs"].first())
    return out.reindex(methods).reset_index()


def length_trend(curve: pd.DataFrame, peer: str = TOPAZ) -> pd.DataFrame:
    """Per SNR metric: the gain per doubling of the DRACO epochs over the sweep's last step (dB), the gap
    to ``peer`` at the longest run (dB, negative = behind), and, only when DRACO is behind and still
    gaining, the doublings it would need at that rate. The last column is a straight-line
    extrapolation in log2(epochs), not a measurement: it says how far off the peer is, not when DRACO gets there."""
    runs = curve.dropna(subset=["epochs"]).sort_values("epochs")
    if len(runs) < 2:
        raise CryolibError("the trend needs at least two training lengths")
    if peer not in set(curve["method"]):
        raise CryolibError(f"{peer!r} is not in the curve; it has {sorted(curve['method'])}")
    prev, last = runs.iloc[-2], runs.iloc[-1]
    doublings = float(np.log2(last["epochs"] / prev["epochs"]))
    theirs = curve.set_index("method").loc[peer]
    rows = []
    for metric in SNR_METRICS:
        slope = (last[metric] - prev[metric]) / doublings
        gap = last[metric] - theirs[metric]
        need = -gap / slope if gap < 0 and slope > 0 else np.nan
        rows.append({"metric": metric, "from_epochs": int(prev["epochs"]), "to_epochs": int(last["epochs"]),
                     "gain_per_doubling_db": float(slope), f"gap_to_{_slug(peer)}_db": float(gap),
                     "doublings_to_reach_at_this_rate": float(need)})
    return pd.DataFrame(rows)


def _slug(label: str) -> str:
    """A column-name form of a method label ("Topaz-Denoise" -> "topaz_denoise")."""
    return "_".join("".join(c if c.isalnum() else " " for c in label.lower()).split())


def curation_by_length(data: CurationData, checkpoints: Mapping[int, str | Path], seed: int = 0) -> pd.DataFrame:
    """Notebook 06's linear probe (Table 4's recipe) on each length's frozen encoder, scored on the held-out
    curation analogs -> one row per length: epochs, accuracy, precision, recall, F1, and ``correct_<class>``
    (accepted share of the good micrographs, rejected share of each defect class)."""
    if not checkpoints:
        raise CryolibError("no DRACO checkpoints to score")
    rows = []
    for epochs, ckpt in sorted(checkpoints.items()):
        res = curation_metrics(ckpt, data, seed)
        per_class = res["per_class"].set_index("class")["correct"]
        rows.append({"method": length_label(epochs), "epochs": int(epochs),
                     **{m: float(res[m]) for m in METRICS},
                     **{f"correct_{c}": float(v) for c, v in per_class.items()}})
    return pd.DataFrame(rows)


def mean_frc_above(frc_mean: pd.DataFrame, method: str, cycles_per_px: float) -> float:
    """Mean FRC of ``method`` over the rings that start at or above ``cycles_per_px``."""
    sel = frc_mean[(frc_mean["method"] == method) & (frc_mean["low_cycles_per_px"] >= cycles_per_px)]
    if sel.empty:
        raise CryolibError(f"no FRC rings of {method!r} at or above {cycles_per_px} cycles/px")
    return float(np.nanmean(sel["frc"]))
