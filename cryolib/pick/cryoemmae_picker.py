"""The Cryo-EMMAE picker object (paper §3.2-3.3): its settings (:class:`PickerConfig`) and
:class:`CryoEMMAEPicker`, which ties the pipeline together for one micrograph at a time.

preprocess (:mod:`cryolib.processing.preprocess`) -> embedding image (:mod:`cryolib.pick.embedding`)
-> global k-means labels and the particle cluster named from one annotated micrograph, then
sequential per-micrograph clustering (:mod:`cryolib.pick.cluster`) -> smoothing, threshold and
components (:mod:`cryolib.pick.postprocess`). Files of fitted pickers: :mod:`cryolib.pick.picker_file`;
the end-to-end pipeline on micrograph files: :mod:`cryolib.pick.cryoemmae`.

Units: "working px" are px of the preprocessed image; a token covers ``token_px`` working px.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cryolib.core.errors import CryolibError
from cryolib.pick.cluster import NearestCentres, fit_global_kmeans, particle_cluster_from_reference, sequential_clustering
from cryolib.pick.embedding import Embedder, embedding_image, smoothing_window_tokens, token_px_of
from cryolib.pick.postprocess import postprocess, training_particle_fraction
from cryolib.processing import preprocess as pp
from cryolib.processing.tiles import tile_stats

__all__ = ["PickerConfig", "CryoEMMAEPicker"]

log = logging.getLogger(__name__)

#: How a micrograph becomes the encoder's working image (:attr:`PickerConfig.input_mode`).
INPUT_MODES = ("cryoemmae", "raw")


@dataclass
class PickerConfig:
    """Settings of :class:`CryoEMMAEPicker` (defaults: paper, else repository, else ours)."""

    tile_px: int = 64  # MAE input tile (px)
    scale_mode: str = "diameter"  # "diameter" (ours) or "fixed" (paper: target_size^2)
    target_diameter_px: float = pp.DEFAULT_TARGET_DIAMETER_PX  # particle diameter at the working scale
    target_size: int = pp.DEFAULT_TARGET_SIZE  # working side in "fixed" mode (px)
    filter_oversample: float | None = 2.0  # see cryoemmae_preprocess
    repo_parity: bool = False  # repository preprocessing variants
    #: "cryoemmae": the §3.1 filter chain (images in [0, 1]); "raw": area-resize + per-micrograph
    #: standardisation, the input a DRACO encoder was pretrained on (tiles then use mean 0, std 1)
    input_mode: str = "cryoemmae"
    standardize_tokens: bool = True  # tokens relative to their micrograph (ours); False = paper/repository
    global_k: int = 4  # paper §3.2
    ks: tuple[int, ...] = (3, 4, 5)  # paper §3.3
    max_tokens: int | None = 500_000  # token subsample for the global k-means (None = all)
    ref_box_frac: float = 0.4  # reference particle square, fraction of d
    reference_cluster_rule: str = "f1"  # particle cluster: "f1" (ours) or "count" (repository)
    smooth_window: int | None = None  # token box smoothing; None = repository rule
    centred_smoothing: bool = True  # False: the repository's half-token offset window
    center_crop_frac: float = 0.8  # sequential-clustering crop (repository [25:231] of 256)
    post_scale: float = 0.5  # post-processing px per working px (paper: 512 of 1024)
    particle_fraction: float | None = 0.04  # mask coverage (paper §3.3); None = measured on the reference
    neighbour_frac: float = 0.5  # repository: d / 2
    edge_frac: float = 1 / 1.5  # repository: d / 1.5
    size_filter_factor: float | None = 3.0  # paper (iii); None = off (repository)
    batch_size: int = 64
    global_kmeans_threads: int | None = None  # OpenMP threads of the global fit (None = sklearn's)
    seed: int = 0

    def __post_init__(self) -> None:
        self.ks = tuple(int(k) for k in self.ks)
        if self.input_mode not in INPUT_MODES:
            raise CryolibError(f"unknown picker input_mode {self.input_mode!r}; choose one of {', '.join(INPUT_MODES)}")
        if self.input_mode == "raw" and self.scale_mode != "diameter":
            raise CryolibError("input_mode 'raw' works at the 'diameter' scale mode only")

    def working_shape(self, shape: tuple[int, int], diameter_px: float) -> tuple[int, int]:
        """(H, W) of the working image for an input of ``shape`` px."""
        fixed = self.scale_mode == "fixed"
        return pp.working_shape(shape, diameter_px, None, self.target_size if fixed else None, self.scale_mode,
                                self.target_diameter_px)

    def preprocess(self, image: np.ndarray, diameter_px: float, keep_stages: bool = False) -> pp.PreprocessResult:
        """Run :func:`cryolib.processing.preprocess.cryoemmae_preprocess` with these settings."""
        if self.input_mode == "raw":
            return pp.standardized_working_image(image, diameter_px, target_diameter_px=self.target_diameter_px)
        fixed = self.scale_mode == "fixed"
        return pp.cryoemmae_preprocess(image, diameter_px, target_size=self.target_size if fixed else None,
                                       repo_parity=self.repo_parity, scale_mode=self.scale_mode,
                                       target_diameter_px=self.target_diameter_px,
                                       filter_oversample=self.filter_oversample, keep_stages=keep_stages)


@dataclass
class CryoEMMAEPicker:
    """Cryo-EMMAE picker: an encoder, the training mean/std, the global k-means centres and the
    particle cluster. ``fit`` learns the last three without labels except one micrograph's."""

    model: Embedder
    mean: float | None = None
    std: float | None = None
    config: PickerConfig = field(default_factory=PickerConfig)
    kmeans: Any = None  # fitted sklearn KMeans or NearestCentres
    particle_cluster: int | None = None
    reference_fraction: float | None = None  # particle area fraction of the annotated micrograph

    @property
    def particle_fraction(self) -> float:
        """Mask coverage the threshold aims at: the config's fixed value, else the reference's."""
        if self.config.particle_fraction is not None:
            return float(self.config.particle_fraction)
        if self.reference_fraction is None:
            raise CryolibError("the picker has no particle fraction: name the particle cluster from an annotated "
                               "micrograph (fit / set_reference) or set PickerConfig.particle_fraction")
        return float(self.reference_fraction)

    @property
    def token_px(self) -> int:
        """Working px per embedding token."""
        return token_px_of(self.model, self.config.tile_px)

    def _check_size(self, image: np.ndarray, diameter_px: float) -> None:
        """Raise :class:`CryolibError` if ``image`` is smaller than one tile at the working scale."""
        shape = self.config.working_shape(pp.check_image(image).shape, diameter_px)
        if min(shape) < self.config.tile_px:
            raise CryolibError(f"micrograph {np.shape(image)} becomes {shape} px at the working scale, smaller than "
                               f"one {self.config.tile_px} px tile; it is too small for diameter {diameter_px} px")

    def _prepare(self, image: np.ndarray, diameter_px: float) -> tuple[pp.PreprocessResult, np.ndarray]:
        """Preprocess and embed one micrograph, unsmoothed (input px -> working image, embedding image)."""
        self._check_size(image, diameter_px)
        pre = self.config.preprocess(image, diameter_px)
        return pre, embedding_image(self.model, pre.image, self.config.tile_px, self.mean, self.std,
                                    self.config.batch_size, standardize_tokens=self.config.standardize_tokens)

    def fit(self, train_images: Sequence[np.ndarray], reference_image: np.ndarray, reference_coords: pd.DataFrame,
            diameter_px: float | Sequence[float], reference_diameter_px: float | None = None) -> CryoEMMAEPicker:
        """Fit the global k-means on ``train_images`` and name the particle cluster (paper §3.2).

        ``diameter_px``: one value (px) or one per training image; ``reference_coords``: x, y of
        the particles of ``reference_image`` in its own px. mean/std default to the training
        tiles' (:func:`cryolib.processing.tiles.tile_stats`). Images are preprocessed here.
        """
        cfg = self.config
        n = len(train_images)
        if n == 0:
            raise CryolibError("fit needs at least one training micrograph")
        if not isinstance(reference_coords, pd.DataFrame) or not {"x", "y"} <= set(reference_coords.columns):
            raise CryolibError("reference_coords must be a DataFrame with columns x, y (reference micrograph px)")
        diams = [diameter_px] * n if np.ndim(diameter_px) == 0 else list(diameter_px)
        if len(diams) != n:
            raise CryolibError(f"got {len(diams)} diameters for {n} training micrographs")
        prepped = [cfg.preprocess(im, d).image for im, d in
                   tqdm(zip(train_images, diams), total=n, desc="preprocess", disable=None)]
        if self.mean is None or self.std is None:
            self.mean, self.std = tile_stats(prepped, cfg.tile_px)
        rng = np.random.default_rng(cfg.seed)
        quota = None if cfg.max_tokens is None else max(1, cfg.max_tokens // n)
        samples = []
        for img in tqdm(prepped, desc="embed", disable=None):
            emb = embedding_image(self.model, img, cfg.tile_px, self.mean, self.std, cfg.batch_size,
                                  standardize_tokens=cfg.standardize_tokens)
            tok = emb.reshape(-1, emb.shape[-1])
            samples.append(tok if quota is None or len(tok) <= quota else tok[rng.choice(len(tok), quota, replace=False)])
        self.kmeans = fit_global_kmeans(samples, cfg.global_k, cfg.max_tokens, cfg.seed, cfg.global_kmeans_threads)
        d_ref = reference_diameter_px if reference_diameter_px is not None else diams[0]
        return self.name_particle_cluster(reference_image, reference_coords, d_ref)

    def name_particle_cluster(self, image: np.ndarray, coords: pd.DataFrame, diameter_px: float) -> CryoEMMAEPicker:
        """Name the particle cluster and measure the particle fraction from ONE annotated micrograph.

        ``image``: the raw micrograph; ``coords``: x, y of its particles in its px; ``diameter_px``:
        px. The measured fraction n * pi d^2 / 4 / (H W) is used only when the config's
        ``particle_fraction`` is None. The default keeps the paper's 4 % (§3.3): our analogs hold
        8-17 % particle area, yet with the measured value the mean F1 of the joint default-profile
        model over the 14 Fig. 2 analogs and gen-capsid-lowdose fell from 0.63 to 0.53 (the
        threshold drops and neighbouring particles merge into one component).
        """
        if self.kmeans is None:
            raise CryolibError("the picker has no k-means yet: call fit(...) or build it with from_state(...)")
        if not isinstance(coords, pd.DataFrame) or not {"x", "y"} <= set(coords.columns) or len(coords) == 0:
            raise CryolibError("reference coordinates need at least one particle with columns x, y (px)")
        d = pp.check_diameter(diameter_px)
        pre, emb = self._prepare(image, d)
        x, y = pre.to_working(coords["x"].to_numpy(float), coords["y"].to_numpy(float))
        cfg = self.config
        self.particle_cluster = particle_cluster_from_reference(
            self.kmeans, emb, pd.DataFrame({"x": x, "y": y}), pre.diameter_px_working, self.token_px,
            cfg.ref_box_frac, cfg.reference_cluster_rule)
        self.reference_fraction = training_particle_fraction([coords], [np.shape(image)], d)
        log.info("reference: particle cluster %d, particle fraction %.3f", self.particle_cluster,
                 self.reference_fraction)
        return self

    def pick(self, image: np.ndarray, diameter_px: float, return_stages: bool = False
             ) -> pd.DataFrame | tuple[pd.DataFrame, dict]:
        """Pick one micrograph -> DataFrame[x, y, diameter, score] in INPUT px (paper §3.3).

        ``return_stages`` also returns the Figure 1 panels: "preprocessed", "global_labels",
        "sequential_masks" (stage 0 then one per k), "smoothed" (post-processing map),
        "threshold" and "picks_working" (x, y in working px).
        """
        if self.kmeans is None or self.particle_cluster is None:
            raise CryolibError("the picker is not fitted: call fit(...) or build it with from_state(...)")
        d = pp.check_diameter(diameter_px)
        cfg, tp = self.config, self.token_px
        self._check_size(image, d)
        pre = cfg.preprocess(image, d)
        d_work = pre.diameter_px_working
        window = cfg.smooth_window if cfg.smooth_window is not None else smoothing_window_tokens(d_work, tp)
        emb = embedding_image(self.model, pre.image, cfg.tile_px, self.mean, self.std, cfg.batch_size, window,
                              cfg.centred_smoothing, cfg.standardize_tokens)
        mask, seq = sequential_clustering(emb, self.kmeans, self.particle_cluster, cfg.ks, cfg.seed,
                                          cfg.center_crop_frac, return_stages=True)
        picks_w, maps = postprocess(mask, d_work, tp, cfg.post_scale, self.particle_fraction, cfg.size_filter_factor,
                                    cfg.edge_frac, cfg.neighbour_frac, return_maps=True)
        x, y = pre.to_input(picks_w["x"].to_numpy(), picks_w["y"].to_numpy())
        picks = pd.DataFrame({"x": x, "y": y, "diameter": np.full(len(x), d), "score": picks_w["score"].to_numpy()})
        picks = picks.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
        if not return_stages:
            return picks
        stages = {"preprocessed": pre.image, "global_labels": seq["global_labels"], "sequential_masks": seq["masks"],
                  "smoothed": maps["smoothed"], "threshold": maps["threshold"], "picks_working": picks_w}
        return picks, stages

    def state_dict(self) -> dict:
        """Everything but the encoder weights: config, mean/std, k-means centres, particle cluster."""
        if self.kmeans is None:
            raise CryolibError("the picker is not fitted; nothing to save")
        cfg = asdict(self.config)
        cfg["ks"] = list(cfg["ks"])
        return {"format": "cryolib.pick.cryoemmae-picker/1", "config": cfg, "mean": float(self.mean),
                "std": float(self.std), "centres": np.asarray(self.kmeans.cluster_centers_, np.float32),
                "particle_cluster": int(self.particle_cluster),
                "reference_fraction": None if self.reference_fraction is None else float(self.reference_fraction)}

    @classmethod
    def from_state(cls, model: Embedder, state: dict) -> CryoEMMAEPicker:
        """Rebuild a fitted picker from :meth:`state_dict` and an encoder (k-means as nearest centre)."""
        missing = {"config", "mean", "std", "centres", "particle_cluster"} - set(state)
        if missing:
            raise CryolibError(f"picker state lacks {sorted(missing)}; was it written by CryoEMMAEPicker.state_dict()?")
        known = {f.name for f in fields(PickerConfig)}
        # a state without standardize_tokens predates it: its k-means saw raw tokens
        config = PickerConfig(**{"standardize_tokens": False,
                                 **{k: v for k, v in state["config"].items() if k in known}})
        centres = NearestCentres(np.asarray(state["centres"]))
        pc = int(state["particle_cluster"])
        if not 0 <= pc < centres.n_clusters:
            raise CryolibError(f"particle cluster {pc} is not one of the {centres.n_clusters} k-means centres")
        ref_fraction = state.get("reference_fraction")
        return cls(model, float(state["mean"]), float(state["std"]), config, centres, pc,
                   None if ref_fraction is None else float(ref_fraction))
