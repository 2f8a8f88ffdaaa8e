"""Cryo-EMMAE's clustering (paper §3.2-3.3) on embedding images [h, w, D].

Global k-means on the training set's tokens (:func:`fit_global_kmeans`; a saved picker keeps
only the centres, :class:`NearestCentres`); the particle cluster is named from one annotated
micrograph (:func:`particle_cluster_from_reference`); per micrograph, sequential k-means with
k = 3, 4, 5 refines the particle mask (:func:`sequential_clustering`, :func:`choose_cluster`;
reference/cryoemmae.md §4-6). The picker that ties these together is
:class:`cryolib.pick.cryoemmae_picker.CryoEMMAEPicker`.

The embedding functions (:mod:`cryolib.pick.embedding`) and the post-processing (§3.3:
:func:`smooth_and_resize`, :func:`choose_threshold`, :func:`postprocess`,
:func:`training_particle_fraction`, :mod:`cryolib.pick.postprocess`) are re-exported here.

Units: "working px" are px of the preprocessed image; a token covers ``token_px`` working px.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

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

log = logging.getLogger(__name__)

__all__ = ["Embedder", "NearestCentres", "token_px_of", "embedding_image", "smooth_embedding",
           "smoothing_window_tokens", "fit_global_kmeans", "particle_cluster_from_reference", "choose_cluster",
           "sequential_clustering", "smooth_and_resize", "choose_threshold", "postprocess",
           "training_particle_fraction"]


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
