"""Notebook 05's study: DRACO zero-shot denoising (DRACO §5.2, Table 2, Figures 4, 5 and 7).

* :func:`load_study`: the Table 2 analogs (registry role ``draco_denoising``: 10421, 10096, 10075,
  11521), the generalisation analogs (role ``generalisation``) and notebook 04's checkpoints
  (:func:`cryolib.studies.draco_pretraining.draco_checkpoints`: ``mae`` = the warm-up MAE,
  ``draco-b``, ``draco-l``).
* :func:`table2`: every method on up to 5 good micrographs per analog (test split first):
  Eq. 11 SNR on 20 ground-truth region pairs per micrograph (:func:`cryolib.evaluate.snr.region_pairs`),
  plus the true SNR over the whole image and in the particle band, which only a simulation has.
  :func:`table2_summary` puts the paper's Table 2 beside ours (``paper_snr_eq11_db``).
* :func:`claims_table`: the paper's Table 2 claims, each tested against our numbers.
* :func:`generalisation_check`: the SHIPPED DRACO model vs Topaz-Denoise vs the best-case Gaussian
  on analogs made with settings DRACO's training never saw (other particle families, lower dose,
  thicker ice and stronger gradients, other pixel sizes), scored by true SNR.
* :func:`reconstruction_examples` (Figure 7): masked odd/even inputs, DRACO's prediction, the MAE's.
"""

from __future__ import annotations

import importlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch

from cryolib.core.errors import CryolibError
from cryolib.denoise import denoise_micrograph
from cryolib.denoise.networks import SHIPPED_DRACO, load_denoising_model
from cryolib.evaluate.scoring import evaluation_micrographs, good_micrographs
from cryolib.evaluate.snr import band_snr_db, region_pairs, snr_eq11, true_snr_db
from cryolib.io.datasets import Dataset, dataset_dir, datasets_with_role, load_dataset
from cryolib.io.micrographs import read_micrograph
from cryolib.processing.triplets import TripletDataset

log = logging.getLogger(__name__)

RAW, LOWPASS, TOPAZ, MAE, DRACO_B, DRACO_L, GAUSSIAN = (
    "Raw", "Low-pass", "Topaz-Denoise", "MAE", "DRACO-B", "DRACO-L", "Gaussian (best case)")
DRACO_B_SHIFTS = "DRACO-B (2 x 2 shifts)"  # ours: DRACO-B averaged over 4 patch-grid offsets (not the paper's)
BLOCK_PX = 16  # DRACO's patch (px), at every profile
BLOCK = f"Block mean ({BLOCK_PX} px)"  # ours: each {BLOCK_PX} px patch replaced by its mean (no learning)
#: Table 2's methods: label -> (registered denoiser, notebook-04 checkpoint key or None).
METHODS: dict[str, tuple[str | None, str | None]] = {
    RAW: (None, None), LOWPASS: ("lowpass", None), TOPAZ: ("topaz", None), MAE: ("mae", "mae"),
    DRACO_B: ("draco", "draco-b"), DRACO_L: ("draco", "draco-l"), DRACO_B_SHIFTS: ("draco", "draco-b"),
    GAUSSIAN: ("gaussian", None), BLOCK: ("blockmean", None)}
#: Options of a method beyond its checkpoint: the shift ensemble (cryolib.denoise.networks.shift_offsets),
#: which removes the 16 px patch grid of DRACO's output at 4x the time. The paper's protocol is DRACO-B's
#: single pass; this row shows what averaging over patch-grid offsets adds. The block mean is the mosaic a
#: patch network gives when each patch predicts only its own mean: DRACO's output with nothing learned
#: inside its patches.
METHOD_OPTIONS: dict[str, dict] = {DRACO_B_SHIFTS: {"shifts": 2}, BLOCK: {"block_px": BLOCK_PX}}
#: DRACO Table 2 (Eq. 11 SNR, dB), by analog: Human Apoferritin, HA Trimer, Phage MS2, RNA polymerase.
PAPER_TABLE2: dict[str, dict[str, float]] = {
    "sim-10421": {RAW: -10.01, LOWPASS: -2.18, TOPAZ: -5.67, MAE: -0.31, DRACO_B: 1.92, DRACO_L: 2.01},
    "sim-10096": {RAW: -6.52, LOWPASS: -0.84, TOPAZ: -0.83, MAE: -1.85, DRACO_B: 3.69, DRACO_L: 3.33},
    "sim-10075": {RAW: -12.52, LOWPASS: -6.71, TOPAZ: -6.93, MAE: -8.45, DRACO_B: -0.13, DRACO_L: 0.23},
    "sim-11521": {RAW: -4.69, LOWPASS: 3.09, TOPAZ: 8.66, MAE: 1.27, DRACO_B: 10.13, DRACO_L: 12.21},
}
N_MICROGRAPHS = 5  # per analog (DRACO §5.2)
N_PAIRS = 20  # Eq. 11 region pairs per micrograph
GEN_N_MICROGRAPHS = 3  # per generalisation analog (keeps notebook 05 near 4 minutes at the default profile)
SHIPPED = "DRACO (shipped)"
GEN_METHODS = (RAW, SHIPPED, TOPAZ, GAUSSIAN)


@dataclass
class DenoisingStudy:
    """Where everything is, and what is scored."""

    profile: str
    seed: int
    datasets: dict[str, Dataset]
    gen_sets: dict[str, Dataset]
    checkpoints: dict[str, Path]
    n_micrographs: int = N_MICROGRAPHS
    n_pairs: int = N_PAIRS
    examples: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    #: every output :func:`table2` made, dataset -> micrograph stem -> method -> image (Table 3 reuses them)
    denoised: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict, repr=False)


def notebook04_checkpoints(profile: str, runs_root: str | Path | None = None) -> dict[str, Path]:
    """Notebook 04's checkpoints by key (``mae``, ``draco-b``, ``draco-l``); each must exist."""
    try:
        pretraining = importlib.import_module("cryolib.studies.draco_pretraining")
    except ImportError as err:
        raise CryolibError(f"cryolib.studies.draco_pretraining is missing ({err}); notebook 04 writes the "
                           "DRACO checkpoints this study reads") from err
    paths = {k: Path(p) for k, p in pretraining.draco_checkpoints(profile, runs_root).items()}
    return _check_checkpoints(paths)


def _check_checkpoints(paths: Mapping[str, str | Path]) -> dict[str, Path]:
    needed = sorted({key for _, key in METHODS.values() if key})
    missing = [k for k in needed if k not in paths or not Path(paths[k]).is_file()]
    if missing:
        raise CryolibError(f"DRACO checkpoints {missing} not found ({ {k: str(paths.get(k)) for k in missing} }); "
                           "run notebook 04_pretrain_draco at this profile first")
    return {k: Path(paths[k]) for k in needed}


def load_study(profile: str, seed: int = 0, data_root: str | Path | None = None, runs_root: str | Path | None = None,
               checkpoints: Mapping[str, str | Path] | None = None, n_micrographs: int = N_MICROGRAPHS,
               n_pairs: int = N_PAIRS) -> DenoisingStudy:
    """The analogs (built by notebook 01) and checkpoints (notebook 04, or ``checkpoints`` given)."""
    def open_all(role: str) -> dict[str, Dataset]:
        return {name: load_dataset(dataset_dir(name, profile, data_root)) for name in datasets_with_role(role)}

    ckpts = _check_checkpoints(checkpoints) if checkpoints is not None else notebook04_checkpoints(profile, runs_root)
    return DenoisingStudy(profile, int(seed), open_all("draco_denoising"), open_all("generalisation"), ckpts,
                          int(n_micrographs), int(n_pairs))


def study_micrographs(ds: Dataset, n: int) -> list[Path]:
    """Up to ``n`` good micrographs: the test split first, then the others (DRACO §5.2: 5 per set)."""
    test = good_micrographs(ds, ds.split("test"))
    rest = [p for p in evaluation_micrographs(ds, is_training_set=False) if p not in test]
    return (test + rest)[:n]


def _pixel_size(path: Path, ds: Dataset) -> float:
    header = read_micrograph(path)[1]
    return header if header > 0 else ds.pixel_size_A


def denoise_all(study: DenoisingStudy, image: np.ndarray, pixel_size_A: float, clean: np.ndarray,
                methods: tuple[str, ...] = tuple(METHODS)) -> dict[str, np.ndarray]:
    """Every Table 2 method's output for one micrograph (label -> float32 image)."""
    out = {}
    for label in methods:
        method, key = METHODS[label]
        if method is None:
            out[label] = image
        else:
            options = {"clean": clean} if method == "gaussian" else dict(METHOD_OPTIONS.get(label, {}))
            ckpt = study.checkpoints[key] if key else None
            out[label] = denoise_micrograph(method, image, pixel_size_A, checkpoint=ckpt, **options)
    return out


def _eq11_or_nan(image: np.ndarray, pairs: tuple[list, list] | None) -> float:
    return snr_eq11(image, *pairs) if pairs is not None else math.nan


def score_outputs(outputs: Mapping[str, np.ndarray], clean: np.ndarray, diameter_px: float,
                  pairs: tuple[list, list] | None) -> list[dict]:
    """One row per method: Eq. 11 SNR, true SNR (whole image) and true SNR in the particle band (dB)."""
    return [{"method": label, "snr_eq11_db": _eq11_or_nan(image, pairs), "true_snr_db": true_snr_db(image, clean),
             "band_snr_db": band_snr_db(image, clean, 1.0 / diameter_px), "n_pairs": len(pairs[0]) if pairs else 0}
            for label, image in outputs.items()]


def eq11_pairs(clean: np.ndarray, ds: Dataset, stem: str, n_pairs: int, seed: int) -> tuple[list, list] | None:
    """Eq. 11 region pairs of one micrograph from its ground truth, or None (logged) when none can be formed."""
    try:
        return region_pairs(clean, ds.coordinates(stem), ds.diameter_px, n_pairs=n_pairs, seed=seed)
    except CryolibError as err:
        log.warning("%s/%s: no Eq. 11 pairs (%s); its Eq. 11 SNR is NaN", ds.name, stem, err)
        return None


def table2(study: DenoisingStudy) -> pd.DataFrame:
    """Per micrograph and method: dataset, micrograph, method, snr_eq11_db, true_snr_db, band_snr_db, n_pairs.

    Keeps the first micrograph's outputs of each analog in ``study.examples`` (Figure 4) and every
    output in ``study.denoised`` (Table 3's reconstructions reuse them).
    """
    rows = []
    for name, ds in study.datasets.items():
        paths = study_micrographs(ds, study.n_micrographs)
        if not paths:
            raise CryolibError(f"{name}: no good micrograph to denoise; rebuild it with notebook 01")
        for k, path in enumerate(paths):
            image = read_micrograph(path)[0]
            clean = read_micrograph(ds.path_of(path.stem, "clean"))[0]
            outputs = denoise_all(study, image, _pixel_size(path, ds), clean)
            study.denoised.setdefault(name, {})[path.stem] = outputs
            pairs = eq11_pairs(clean, ds, path.stem, study.n_pairs, study.seed)
            rows += [{"dataset": name, "micrograph": path.stem, **r}
                     for r in score_outputs(outputs, clean, ds.diameter_px, pairs)]
            if k == 0:
                study.examples[name] = {**outputs, "Clean": clean}
    return pd.DataFrame(rows)


def _weighted(group: pd.DataFrame) -> pd.Series:
    eq11 = group.dropna(subset=["snr_eq11_db"])
    w = eq11["n_pairs"].to_numpy(float)
    return pd.Series({
        "snr_eq11_db": float(np.average(eq11["snr_eq11_db"], weights=w)) if w.sum() > 0 else math.nan,
        "true_snr_db": float(group["true_snr_db"].mean()), "band_snr_db": float(group["band_snr_db"].mean()),
        "n_micrographs": int(group["micrograph"].nunique()), "n_pairs": int(group["n_pairs"].sum())})


def table2_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per analog and method: Eq. 11 SNR (pooled over all pairs) beside the paper's, and the true SNRs."""
    out = rows.groupby(["dataset", "method"], sort=False).apply(_weighted, include_groups=False).reset_index()
    out["paper_snr_eq11_db"] = [PAPER_TABLE2.get(d, {}).get(m, math.nan) for d, m in zip(out["dataset"], out["method"])]
    out[["n_micrographs", "n_pairs"]] = out[["n_micrographs", "n_pairs"]].astype(int)
    cols = ["dataset", "method", "snr_eq11_db", "paper_snr_eq11_db", "true_snr_db", "band_snr_db",
            "n_micrographs", "n_pairs"]
    return out[cols]


def table2_pivot(summary: pd.DataFrame, value: str = "snr_eq11_db") -> pd.DataFrame:
    """The paper's layout: one row per method, one column per analog (plus the mean)."""
    wide = summary.pivot(index="method", columns="dataset", values=value).reindex(list(METHODS))
    wide["mean"] = wide.mean(axis=1)
    return wide


def example_crops(study: DenoisingStudy, datasets: Mapping[str, Dataset]) -> dict[str, dict[str, np.ndarray]]:
    """The kept outputs (method -> image, plus "Clean") of the first micrograph of each of ``datasets``."""
    return {name: study.examples[name] for name in datasets if name in study.examples}


def _shipped_or_run(study: DenoisingStudy, require_shipped: bool) -> tuple[Path, str]:
    """The shipped DRACO denoiser; if it is not installed yet and not required, this run's DRACO-B (labelled)."""
    if SHIPPED_DRACO.is_file():
        return SHIPPED_DRACO, f"shipped (cryolib/assets/{SHIPPED_DRACO.name})"
    if require_shipped:
        raise CryolibError(f"the shipped DRACO denoiser {SHIPPED_DRACO} is not installed; run notebook 04 at the "
                           "default profile first (it installs it)")
    log.warning("the shipped DRACO denoiser is not installed; the generalisation check uses this run's DRACO-B")
    return study.checkpoints["draco-b"], "this run's DRACO-B (the shipped model is not installed yet)"


def generalisation_check(study: DenoisingStudy, require_shipped: bool = False) -> pd.DataFrame:
    """Shipped DRACO vs Topaz-Denoise vs the best-case Gaussian on the generalisation analogs.

    Per analog and method: mean true SNR (whole image, particle band) over up to
    ``min(n_micrographs, GEN_N_MICROGRAPHS)`` good micrographs, and ``model`` (which DRACO
    checkpoint ran). Keeps the first micrograph's outputs in ``examples`` (Figure 5).
    """
    ckpt, model = _shipped_or_run(study, require_shipped)
    rows = []
    for name, ds in study.gen_sets.items():
        for k, path in enumerate(study_micrographs(ds, min(study.n_micrographs, GEN_N_MICROGRAPHS))):
            image = read_micrograph(path)[0]
            clean = read_micrograph(ds.path_of(path.stem, "clean"))[0]
            outputs = {RAW: image, SHIPPED: denoise_micrograph("draco", image, checkpoint=ckpt),
                       TOPAZ: denoise_micrograph("topaz", image),
                       GAUSSIAN: denoise_micrograph("gaussian", image, clean=clean)}
            rows += [{"dataset": name, "micrograph": path.stem, **r}
                     for r in score_outputs(outputs, clean, ds.diameter_px, None)]
            if k == 0:
                study.examples[name] = {**outputs, "Clean": clean}
    per_mic = pd.DataFrame(rows)
    out = per_mic.groupby(["dataset", "method"], sort=False)[["true_snr_db", "band_snr_db"]].mean().reset_index()
    out["n_micrographs"] = per_mic.groupby(["dataset", "method"], sort=False)["micrograph"].nunique().to_numpy()
    out["pixel_size_A"] = out["dataset"].map({n: ds.pixel_size_A for n, ds in study.gen_sets.items()})
    out["model"] = model
    return out


@torch.no_grad()
def reconstruction_examples(study: DenoisingStudy, n_examples: int = 2, mask_ratio: float = 0.75) -> list[dict]:
    """Figure 7: for one test tile of the first ``n_examples`` analogs, the masked odd and even
    inputs (masked patches NaN), DRACO-B's prediction of every patch, the MAE's reconstruction at
    the same mask ratio (its own random mask, visible patches pasted) and the full-dose target."""
    draco, _ = load_denoising_model(study.checkpoints["draco-b"], "draco")
    mae, _ = load_denoising_model(study.checkpoints["mae"], "mae")
    from cryolib.models.reconstruction import masked_reconstruction
    from cryolib.models.vit import patchify, unpatchify

    out, p, t = [], draco.cfg.patch_size, draco.cfg.img_size
    for name, ds in list(study.datasets.items())[:n_examples]:
        paths = study_micrographs(ds, 1)
        triplets = TripletDataset.from_folder(ds, split=None, tile_px=t, augment=False)
        index = [i for i, (k, _, _) in enumerate(triplets.index) if ds.micrographs[k] in paths] or [0]
        full, odd, even = (torch.from_numpy(a[None, None].copy()) for a in triplets.tiles(index[0]))
        gen = torch.Generator().manual_seed(study.seed)
        res = draco.eval()(odd, even, mask_ratio, gen)
        grid = (t // p, t // p)

        def holes(img: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
            patches = patchify(img, p)
            patches = torch.where(mask.bool().unsqueeze(-1), torch.full_like(patches, float("nan")), patches)
            return unpatchify(patches, p, 1, grid)[0, 0].numpy()

        mae_rec = masked_reconstruction(mae, full, mask_ratio, seed=study.seed)
        out.append({"dataset": name, "masked odd": holes(odd, res.mask_odd), "masked even": holes(even, res.mask_even),
                    "DRACO prediction": unpatchify(res.pred, p, 1, grid)[0, 0].numpy(),
                    "MAE reconstruction": mae_rec["pasted"][0], "full target": full[0, 0].numpy()})
    return out


# --------------------------------------------------------------------------- claims and headline numbers
def _wins(wide: pd.DataFrame, ours: tuple[str, ...], theirs: tuple[str, ...]) -> tuple[int, int]:
    """(analogs where the best of ``ours`` beats the best of ``theirs``, analogs compared)."""
    sets = [c for c in wide.columns if c != "mean" and wide.loc[list(ours + theirs), c].notna().all()]
    wins = sum(wide.loc[list(ours), c].max() > wide.loc[list(theirs), c].max() for c in sets)
    return int(wins), len(sets)


def claims_table(summary: pd.DataFrame, generalisation: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per claim: ``claim``, ``paper_statement``, ``paper_numbers``, ``our_numbers``, ``supported``."""
    eq11, true = table2_pivot(summary), table2_pivot(summary, "true_snr_db")
    paper = pd.DataFrame(PAPER_TABLE2)
    draco = (DRACO_B, DRACO_L)
    rows = []
    for claim, statement, ours, theirs in [
        ("DRACO beats Topaz-Denoise and low-pass (Eq. 11)", "DRACO outperforms all other baselines (Table 2)",
         draco, (TOPAZ, LOWPASS)),
        ("DRACO beats the plain MAE (Eq. 11)", "MAE recovers only smooth contours with patch artifacts (§5.2)",
         draco, (MAE,)),
        ("DRACO raises SNR over the raw micrograph (Eq. 11)", "every denoiser improves on Raw (Table 2)",
         draco, (RAW,)),
    ]:
        wins, n = _wins(eq11, ours, theirs)
        p_wins = sum(paper.loc[list(ours), c].max() > paper.loc[list(theirs), c].max() for c in paper.columns)
        rows.append((claim, statement, f"{p_wins}/{paper.shape[1]} sets", f"{wins}/{n} analogs", n > 0 and wins == n))
    lb = [c for c in eq11.columns if c != "mean" and eq11.loc[[DRACO_B, DRACO_L], c].notna().all()]
    l_wins = sum(eq11.loc[DRACO_L, c] > eq11.loc[DRACO_B, c] for c in lb)
    p_l = int((paper.loc[DRACO_L] > paper.loc[DRACO_B]).sum())
    rows.append(("The larger encoder helps (DRACO-L > DRACO-B, Eq. 11)", "DRACO-L is best on 3 of 4 sets (Table 2)",
                 f"{p_l}/{paper.shape[1]} sets", f"{l_wins}/{len(lb)} analogs", len(lb) > 0 and l_wins > len(lb) / 2))
    if DRACO_B_SHIFTS in eq11.index and eq11.loc[DRACO_B_SHIFTS].notna().any():
        for metric, wide in (("Eq. 11", eq11), ("true SNR", true)):
            s_wins, s_n = _wins(wide, (DRACO_B_SHIFTS,), (TOPAZ, LOWPASS))
            rows.append((f"DRACO-B with a 2 x 2 shift ensemble beats Topaz-Denoise and low-pass ({metric}; ours)",
                         "not in the paper: the paper denoises in one pass", "n/a", f"{s_wins}/{s_n} analogs",
                         s_n > 0 and s_wins == s_n))
    g_wins, g_n = _wins(true, draco, (GAUSSIAN,))
    rows.append(("DRACO beats a perfectly tuned Gaussian (true SNR; ours)", "not in the paper: what learning adds",
                 "n/a", f"{g_wins}/{g_n} analogs", g_n > 0 and g_wins == g_n))
    if BLOCK in true.index and true.loc[BLOCK].notna().any():
        b_wins, b_n = _wins(true, (DRACO_B,), (BLOCK,))
        rows.append((f"DRACO-B beats the mean of each of its {BLOCK_PX} px patches (true SNR; ours)",
                     "not in the paper: what DRACO learns inside a patch", "n/a", f"{b_wins}/{b_n} analogs",
                     b_n > 0 and b_wins == b_n))
    if generalisation is not None and len(generalisation):
        g = generalisation.pivot(index="method", columns="dataset", values="true_snr_db")
        wins = int((g.loc[SHIPPED] > g.loc[TOPAZ]).sum())
        rows.append(("Shipped DRACO generalises better than Topaz-Denoise (true SNR; ours)",
                     "DRACO shows the best generalizability (§5.2)", "n/a",
                     f"{wins}/{g.shape[1]} unseen analogs", wins == g.shape[1]))
    table = pd.DataFrame(rows, columns=["claim", "paper_statement", "paper_numbers", "our_numbers", "supported"])
    table["supported"] = table["supported"].map({True: "yes", False: "no"})
    return table


def headline_metrics(summary: pd.DataFrame, claims: pd.DataFrame, generalisation: pd.DataFrame) -> dict:
    """Named numbers for ``metrics.json``: mean SNRs per method (dB), per-analog DRACO-B Eq. 11, claims.

    A method whose Eq. 11 is +inf on some analog (a flat background box: the block mean) is listed under
    ``infinite_snr_eq11`` instead of ``mean_snr_eq11_db``."""
    eq11, true, band = (table2_pivot(summary, v)["mean"] for v in ("snr_eq11_db", "true_snr_db", "band_snr_db"))
    gen = generalisation.groupby("method")[["true_snr_db", "band_snr_db"]].mean()
    eq11 = eq11.dropna()
    return {
        "mean_snr_eq11_db": eq11[np.isfinite(eq11)].to_dict(),
        "infinite_snr_eq11": sorted(eq11.index[~np.isfinite(eq11)]),
        "mean_true_snr_db": true.dropna().to_dict(),
        "mean_band_snr_db": band.dropna().to_dict(),
        "draco_b_snr_eq11_db": summary[summary["method"] == DRACO_B].set_index("dataset")["snr_eq11_db"].to_dict(),
        "n_pairs": int(summary.loc[summary["method"] == RAW, "n_pairs"].sum()),
        "generalisation_true_snr_db": gen["true_snr_db"].to_dict(),
        "generalisation_band_snr_db": gen["band_snr_db"].to_dict(),
        "generalisation_model": str(generalisation["model"].iloc[0]) if len(generalisation) else "",
        "claims_supported": dict(zip(claims["claim"], claims["supported"] == "yes")),
    }
