"""The Cryo-EMMAE picker: MAE embeddings + k-means + sequential clustering (paper §3.2-3.3).

Pipeline (reference/cryoemmae.md §4-6): preprocess (:mod:`cryolib.processing.preprocess`) -> embed each
non-overlapping tile with the MAE encoder and stitch the token grids into an embedding image
(:func:`embedding_image`, :mod:`cryolib.pick.embedding`) -> label tokens with k-means fitted on
the training set (:func:`fit_global_kmeans`); the particle cluster is named from one annotated
micrograph (:func:`particle_cluster_from_reference`) -> refine per micrograph with k = 3, 4, 5
(:func:`sequential_clustering`) -> smooth, threshold and label components (:func:`postprocess`).
:class:`CryoEMMAEPicker` ties it together.

The post-processing (§3.3: :func:`smooth_and_resize`, :func:`choose_threshold`,
:func:`postprocess`, :func:`training_particle_fraction`) lives in :mod:`cryolib.pick.postprocess`
and is re-exported here, as are the embedding functions.

Units: "working px" are px of the preprocessed image; a token covers ``token_px`` working px.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from cryolib.processing import preprocess as pp
from cryolib.core.errors import CryolibError
from cryolib.pick.embedding import (  # noqa: F401  (re-exported: the picker's one namespace)
    Embedder,
    embedding_image,
    smooth_embedding,
    smoothing_window_tokens,
    standardize_embedding,
    token_px_of,
)
from cryolib.pick.postprocess import (  # noqa: F401  (re-exported)
    choose_threshold,
    postprocess,
    smooth_and_resize,
    training_particle_fraction,
)
from cryolib.processing.tiles import tile_stats

log = logging.getLogger(__name__)

__all__ = ["Embedder", "NearestCentres", "token_px_of", "embedding_image", "smooth_embedding",
           "smoothing_window_tokens", "fit_global_kmeans", "particle_cluster_from_reference", "choose_cluster",
           "sequential_clustering", "smooth_and_resize", "choose_threshold", "postprocess",
           "training_particle_fraction", "PickerConfig", "CryoEMMAEPicker"]


class NearestCentres:
    """A k-means predictor rebuilt from its centres: nearest centre in Euclidean distance."""

    def __init__(self, centres: np.ndarray):
        self.cluster_centers_ = np.asarray(centres, np.float32)
        if self.cluster_centers_.ndim != 2 or len(self.cluster_centers_) < 1:
            raise CryolibError(f"k-means centres must be a [k, D] array; got shape {self.cluster_centers_.shape}")
        self.n_clusters = len(self.cluster_centers_)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Labels [N] of tokens ``x`` [N, D]."""
        x = np.asarray(x, np.float32)
        c = self.cluster_centers_
        d2 = (c * c).sum(1)[None, :] - 2.0 * x @ c.T  # + |x|^2, constant per row
        return d2.argmin(1)


# --------------------------------------------------------------------------- clustering (§3.2-3.3)
def fit_global_kmeans(embeddings: Sequence[np.ndarray], k: int = 4, max_tokens: int | None = 500_000,
                      seed: int = 0, n_threads: int | None = None) -> KMeans:
    """k-means (k = 4, paper §3.2) on the tokens of the training embeddings ([h, w, D] or [n, D] each).

    The repository clusters every token (11.8 M for 180 micrographs). For CPU profiles at most
    ``max_tokens`` tokens are drawn uniformly at random (``seed``); ``None`` uses all of them.
    ``n_threads``: OpenMP threads (None = sklearn's default).
    """
    if len(embeddings) == 0:
        raise CryolibError("fit_global_kmeans needs at least one embedding")
    tokens = np.concatenate([np.asarray(e, np.float32).reshape(-1, np.shape(e)[-1]) for e in embeddings])
    if max_tokens is not None and len(tokens) > max_tokens:
        rng = np.random.default_rng(seed)
        tokens = tokens[np.sort(rng.choice(len(tokens), size=int(max_tokens), replace=False))]
    if len(tokens) < k:
        raise CryolibError(f"k-means with k={k} needs at least {k} tokens; got {len(tokens)}")
    log.info("global k-means: k=%d on %d tokens of dim %d", k, len(tokens), tokens.shape[1])
    with threadpool_limits(limits=n_threads, user_api="openmp"):
        return KMeans(n_clusters=k, random_state=seed, n_init="auto").fit(tokens)


def _predict_map(kmeans: Any, embedding: np.ndarray) -> np.ndarray:
    """Cluster label map [h, w] of an embedding image [h, w, D]."""
    h, w, dim = embedding.shape
    return np.asarray(kmeans.predict(embedding.reshape(-1, dim).astype(np.float32))).reshape(h, w)


def reference_token_mask(shape: tuple[int, int], ref_coords: pd.DataFrame, diameter_px_working: float,
                         token_px: int, box_frac: float = 0.4) -> np.ndarray:
    """Tokens [h, w] inside the annotated particles of one micrograph (x, y in working px).

    Each particle marks the tokens whose centres lie in a square of side max(token_px,
    box_frac * d) around it; the default 0.4 matches the repository's 4 x 4-token squares
    (16 px) at the paper's d of 36-54 px at 1024.
    """
    h, w = shape
    if ref_coords is None or len(ref_coords) == 0 or not {"x", "y"} <= set(ref_coords.columns):
        raise CryolibError("reference annotations need at least one particle with columns x, y")
    half = max(token_px, box_frac * pp.check_diameter(diameter_px_working)) / 2
    centres = (np.arange(max(h, w)) + 0.5) * token_px - 0.5  # token centres in working px
    inside = np.zeros((h, w), bool)
    for x, y in zip(ref_coords["x"].to_numpy(float), ref_coords["y"].to_numpy(float)):
        cols = np.abs(centres[:w] - x) <= half
        rows = np.abs(centres[:h] - y) <= half
        if not cols.any() or not rows.any():  # box narrower than a token: take the token under the centre
            cols, rows = np.arange(w) == int(x // token_px), np.arange(h) == int(y // token_px)
        inside |= rows[:, None] & cols[None, :]
    if not inside.any():
        raise CryolibError("no reference particle lies inside the reference micrograph; check the coordinates' scale")
    return inside


CLUSTER_RULES = ("f1", "count")


def particle_cluster_from_reference(kmeans: Any, embedding: np.ndarray, ref_coords: pd.DataFrame,
                                    diameter_px_working: float, token_px: int, box_frac: float = 0.4,
                                    rule: str = "f1") -> int:
    """The global cluster that marks the annotated particles of one micrograph (paper §3.2).

    ``ref_coords``: x, y of the micrograph's particles in working px, marked as token squares by
    :func:`reference_token_mask`. ``embedding`` is unsmoothed, like the tokens the k-means was
    fitted on. ``rule``:

    * ``"f1"`` (default, ours): the cluster whose token mask best matches the particle squares,
      F1 = 2 |C ∩ P| / (|C| + |P|). The paper only says the cluster is identified "by reference
      annotations"; F1 discounts a large background cluster that covers the particles merely
      because it covers most of the micrograph.
    * ``"count"`` (repository ``find_particles_cluster``): the cluster with the most tokens inside.
    """
    if rule not in CLUSTER_RULES:
        raise CryolibError(f"unknown particle-cluster rule {rule!r}; choose one of {', '.join(CLUSTER_RULES)}")
    labels = _predict_map(kmeans, embedding)
    inside = reference_token_mask(labels.shape, ref_coords, diameter_px_working, token_px, box_frac)
    k = len(kmeans.cluster_centers_)
    counts = np.bincount(labels[inside], minlength=k).astype(float)
    sizes = np.bincount(labels.ravel(), minlength=k).astype(float)
    f1 = 2 * counts / (sizes + inside.sum())
    log.info("reference: tokens per global cluster inside the particles %s, F1 %s", counts.astype(int).tolist(),
             np.round(f1, 3).tolist())
    return int((f1 if rule == "f1" else counts).argmax())


def choose_cluster(labels: np.ndarray, previous: np.ndarray, crop: tuple[slice, slice], k: int) -> int | None:
    """The repository's rule for the new particle cluster (cryoemmae.md §5, steps 3-4).

    overlap[c] = tokens of new cluster c inside the previous mask, counted in the central crop,
    or over the whole map if nothing overlaps there. Candidate = the largest overlap; the
    runner-up (2nd largest, if > 0) replaces it when size[cand] / overlap[cand] >
    size[runner] / overlap[runner], with size = the cluster's tokens in the whole map (the
    cluster less spread outside the previous mask wins). ``None`` if nothing overlaps at all.
    Counts are taken explicitly, so nothing assumes "outside the mask" is the commonest value.
    """
    overlap = np.bincount(labels[crop][previous[crop]], minlength=k)
    if overlap.sum() == 0:
        overlap = np.bincount(labels[previous], minlength=k)
    if overlap.sum() == 0:
        return None
    sizes = np.bincount(labels.ravel(), minlength=k)
    order = np.argsort(-overlap, kind="stable")
    cand, runner = int(order[0]), int(order[1]) if k > 1 else None
    if runner is not None and overlap[runner] > 0 and sizes[cand] / overlap[cand] > sizes[runner] / overlap[runner]:
        return runner
    return cand


def sequential_clustering(embedding: np.ndarray, global_kmeans: Any, particle_cluster: int,
                          ks: Sequence[int] = (3, 4, 5), seed: int = 0, center_crop_frac: float = 0.8,
                          return_stages: bool = False, n_threads: int | None = 1) -> np.ndarray | tuple[np.ndarray, dict]:
    """Sequential per-micrograph clustering (paper §3.3) -> particle mask [h, w] bool.

    ``embedding``: the smoothed embedding image [h, w, D]. Stage 0 labels it with the global
    k-means; then for each k a KMeans(k, random_state=seed) on this micrograph's tokens, with the
    new particle cluster chosen by :func:`choose_cluster` against the previous mask (kept if
    nothing overlaps). The crop drops int(side * (1 - frac) / 2) tokens per border: 0.8 is the
    repository's [25:231] of 256. ``return_stages`` adds {"global_labels", "labels", "masks"}.
    ``n_threads``: OpenMP threads for these small fits (1: a shared or parallel CPU run is not
    slowed by spin-waiting threads; measured 20x on a loaded 2-core machine; None = sklearn's).
    """
    h, w, dim = embedding.shape
    tokens = embedding.reshape(-1, dim).astype(np.float32)
    global_labels = _predict_map(global_kmeans, embedding)
    mask = global_labels == particle_cluster
    mh, mw = int(h * (1 - center_crop_frac) / 2), int(w * (1 - center_crop_frac) / 2)
    crop = (slice(mh, h - mh), slice(mw, w - mw))
    stages: dict[str, Any] = {"global_labels": global_labels, "labels": [], "masks": [mask]}
    for k in ks:
        if len(tokens) < k:
            raise CryolibError(f"micrograph has {len(tokens)} tokens, too few for k-means with k={k}")
        with threadpool_limits(limits=n_threads, user_api="openmp"):
            labels = KMeans(n_clusters=k, random_state=seed, n_init="auto").fit(tokens).labels_.reshape(h, w)
        chosen = choose_cluster(labels, mask, crop, k)
        if chosen is None:
            log.debug("sequential k=%d: previous mask is empty; keeping it", k)
        else:
            mask = labels == chosen
        stages["labels"].append(labels)
        stages["masks"].append(mask)
    return (mask, stages) if return_stages else mask


# --------------------------------------------------------------------------- the picker
@dataclass
class PickerConfig:
    """Settings of :class:`CryoEMMAEPicker` (defaults: paper, else repository, else ours)."""

    tile_px: int = 64  # MAE input tile (px)
    scale_mode: str = "diameter"  # "diameter" (ours) or "fixed" (paper: target_size^2)
    target_diameter_px: float = pp.DEFAULT_TARGET_DIAMETER_PX  # particle diameter at the working scale
    target_size: int = pp.DEFAULT_TARGET_SIZE  # working side in "fixed" mode (px)
    filter_oversample: float | None = 2.0  # see cryoemmae_preprocess
    repo_parity: bool = False  # repository preprocessing variants
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

    def working_shape(self, shape: tuple[int, int], diameter_px: float) -> tuple[int, int]:
        """(H, W) of the working image for an input of ``shape`` px."""
        fixed = self.scale_mode == "fixed"
        return pp.working_shape(shape, diameter_px, None, self.target_size if fixed else None, self.scale_mode,
                                self.target_diameter_px)

    def preprocess(self, image: np.ndarray, diameter_px: float, keep_stages: bool = False) -> pp.PreprocessResult:
        """Run :func:`cryolib.processing.preprocess.cryoemmae_preprocess` with these settings."""
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
