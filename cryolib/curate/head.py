"""The curation head file: a trained :class:`~cryolib.curate.probe.LinearProbe` plus what it needs.

One small file (``torch.save`` of plain types and tensors, read with ``weights_only=True``):

* ``format``: :data:`HEAD_FORMAT`; ``name``; ``threshold`` (accept when P(accept) >= it);
* ``features``: ``{"kind": "encoder" | "image_statistics" | "encoder+image_statistics", "max_tiles",
  "n_bands", "session_relative", "range"}``; the last kind concatenates the encoder embedding and the
  image statistics (:mod:`cryolib.curate.features`), one linear head on both; ``session_relative``
  ``"all"`` takes every feature relative to the session (the micrographs scored together), ``True``
  (heads written before) only the mean counts, ``False`` none; ``range`` is the training range of the
  image statistics (below), written by :meth:`CurationHead.fit`; ``particles`` (optional:
  ``{"picker", "checkpoint", "min_score"}``) adds one last column, the particle coverage of each micrograph
  (:func:`~cryolib.curate.features.particle_coverage`), which the caller computes with that picker and
  passes in (``coverage=``): curation does not run pickers itself (the layers keep them apart);
* ``encoder``: the checkpoint the features come from, as a path or ``"asset:<file>"`` (a file in
  ``cryolib/assets/``, e.g. the shipped DRACO model ``asset:draco_default.pt``), and
  ``encoder_sha256``, the fingerprint of its encoder weights (:func:`encoder_fingerprint`), checked
  on load so a head never runs on features of another encoder;
* ``probe``: the probe's standardisation and weights; ``card``: a JSON-able model card.

The head stores no encoder weights (it stays a few kB); the encoder checkpoint is loaded on use.

Training range (:meth:`CurationHead.out_of_range`). A head with image statistics knows where its
training micrographs lay: the mean and std of each statistic over them, with the mean counts relative
to their session and every other statistic as measured (``features["range"]``; heads written before
it use the probe's standardisation). A micrograph whose statistic lies more than
:data:`OUT_OF_RANGE_Z` training standard deviations away is outside that range, and its score means
little: the statistics assume counts (e⁻ per pixel), so an 8-bit, downsampled or normalised image
lands there, even when all the micrographs of a session are alike and so look ordinary relative to
one another. With the shipped head, CryoPPP's PNGs (`../shared/realdata/`) reach |z| 9.8–13.8 on the
top power band, cut by their downsampling; the held-out analogs stay within |z| 3.8 and the
generalisation analogs (another dose and pixel size) within 2.4. The encoder embedding gets no such
check: its features reach |z| 17 on held-out analogs that the head scores right.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

import cryolib
from cryolib.core.atomic import atomic_path
from cryolib.core.errors import CryolibError
from cryolib.core.files import load_torch_file
from cryolib.curate.features import (COVERAGE_NAME, N_BANDS, encoder_features, image_statistics,
                                     image_statistics_names, relative_to_session)
from cryolib.curate.probe import LinearProbe

log = logging.getLogger(__name__)

__all__ = ["HEAD_FORMAT", "ASSETS_DIR", "DEFAULT_ENCODER", "DEFAULT_HEAD", "OUT_OF_RANGE_Z", "CurationHead",
           "load_encoder", "encoder_fingerprint", "resolve_encoder", "save_curation_head", "load_curation_head"]

HEAD_FORMAT = "cryolib-curation-head/1"
ASSETS_DIR = Path(cryolib.__file__).resolve().parent / "assets"
DEFAULT_ENCODER = "asset:draco_default.pt"  # the shipped DRACO model
DEFAULT_HEAD = ASSETS_DIR / "draco_curation.pt"  # the shipped curation head
FEATURE_KINDS = ("encoder", "image_statistics", "encoder+image_statistics")
SESSION_MODES = (False, True, "all")  # features["session_relative"] (module docstring)
OUT_OF_RANGE_Z = 6.0  # |z| of an image statistic beyond which a micrograph is outside the training range


def resolve_encoder(ref: str | os.PathLike) -> Path:
    """The file of an encoder reference: ``asset:<file>`` (in cryolib/assets/) or a path; must exist."""
    ref = str(ref)
    if ref.startswith("asset:"):
        path = ASSETS_DIR / ref[len("asset:"):]
        if not path.is_file():
            raise CryolibError(f"the shipped model {path} does not exist yet: it is written by the DRACO "
                               "pretraining study (notebook 04); train it, or pass --checkpoint with a curation head "
                               "trained on another encoder")
        return path
    path = Path(ref).expanduser()
    if not path.is_file():
        raise CryolibError(f"encoder checkpoint {path} not found; train it first or fix the path")
    return path


def encoder_fingerprint(model: nn.Module) -> str:
    """sha256 of the encoder's weights (names and float32 bytes, sorted by name): which encoder a head needs."""
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        raise CryolibError(f"{type(model).__name__} has no encoder")
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_encoder(ref: str | os.PathLike) -> tuple[nn.Module, dict]:
    """(model in eval mode, data_stats) of an encoder checkpoint (a ``cryolib pretrain``/DRACO run)."""
    from cryolib.training.checkpoint import load_model

    path = resolve_encoder(ref)
    model, ckpt = load_model(path)
    if not hasattr(model, "embed"):
        raise CryolibError(f"{path}: a {type(model).__name__} has no embed(); use a DRACO or MAE checkpoint")
    return model, dict(ckpt.get("data_stats") or {})


@dataclasses.dataclass
class CurationHead:
    """A trained accept/reject head and how to featurise micrographs for it (module docstring)."""

    name: str
    probe: LinearProbe
    features: dict
    encoder: str | None = None
    encoder_sha256: str | None = None
    threshold: float = 0.5
    card: dict = dataclasses.field(default_factory=dict)
    _encoder_cache: tuple[nn.Module, dict] | None = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        kind = self.features.get("kind")
        if kind not in FEATURE_KINDS:
            raise CryolibError(f"unknown feature kind {kind!r}; choose one of {FEATURE_KINDS}")
        if kind != "image_statistics" and not self.encoder:
            raise CryolibError("an encoder-feature head needs its encoder checkpoint")
        if self.features.get("session_relative", False) not in SESSION_MODES:
            raise CryolibError(f"session_relative must be one of {SESSION_MODES}, got "
                               f"{self.features['session_relative']!r}")
        if not (np.isfinite(self.threshold) and 0.0 <= self.threshold <= 1.0):
            raise CryolibError(f"threshold must be a probability in [0, 1], got {self.threshold}")

    def load_encoder(self) -> tuple[nn.Module, dict]:
        """The encoder (cached), checked against the stored fingerprint."""
        if self._encoder_cache is None:
            model, stats = load_encoder(self.encoder)
            if self.encoder_sha256 and encoder_fingerprint(model) != self.encoder_sha256:
                raise CryolibError(f"encoder {self.encoder} is not the one curation head {self.name!r} was trained on "
                                   "(weights fingerprint differs); retrain the head on this encoder")
            self._encoder_cache = (model, stats)
        return self._encoder_cache

    @property
    def needs_coverage(self) -> bool:
        """True when the head's last feature is the particle coverage (``features["particles"]``)."""
        return bool(self.features.get("particles"))

    def _statistics_names(self) -> list[str]:
        """Names of the image statistics of a head that has them (the columns before the coverage, if any)."""
        return image_statistics_names(int(self.features.get("n_bands", N_BANDS)))

    def _statistics_columns(self) -> slice:
        """Where the image statistics sit in a feature row: last, or just before the particle coverage."""
        end = -1 if self.needs_coverage else None
        return slice(-len(self._statistics_names()) - (1 if self.needs_coverage else 0), end)

    def absolute_features(self, images: Sequence[np.ndarray], coverage: Sequence[float] | None = None) -> np.ndarray:
        """Features [N, D] of micrographs (2-D arrays in counts), each on its own (no session step); ``coverage``:
        the log10 particle coverage of each micrograph, for a head that uses it (module docstring)."""
        kind, parts = self.features["kind"], []
        column = self.coverage_column(coverage, len(images))  # checked first: it needs no work
        if kind != "image_statistics":
            model, stats = self.load_encoder()
            parts.append(encoder_features(model, images, stats, int(self.features.get("max_tiles", 16))))
        if kind != "encoder":
            n_bands = int(self.features.get("n_bands", N_BANDS))
            parts.append(np.stack([image_statistics(im, n_bands) for im in images]))
        return np.hstack(parts + ([column] if column is not None else []))

    def coverage_column(self, coverage: Sequence[float] | None, n: int) -> np.ndarray | None:
        """``coverage`` of ``n`` micrographs as the last feature column [n, 1] of a head that uses it (else None);
        a :class:`CryolibError` that says what to pass when it is missing or of the wrong length."""
        if not self.needs_coverage:
            return None
        if coverage is None:
            picker = self.features["particles"].get("picker", "a picker")
            raise CryolibError(f"curation head {self.name!r} uses the particle coverage ({COVERAGE_NAME}, counted "
                               f"with {picker}): pass the particle diameter (cryolib curate --diameter-px)")
        values = np.asarray(coverage, dtype=np.float64).reshape(-1, 1)
        if len(values) != n or not np.isfinite(values).all():
            raise CryolibError(f"need one finite particle coverage per micrograph: {len(values)} for {n} micrographs")
        return values

    def session_features(self, features: np.ndarray, sessions: Sequence[str] | None = None) -> np.ndarray:
        """:meth:`absolute_features` of micrographs scored together -> the head's features, taken relative to
        each session (:func:`~cryolib.curate.features.relative_to_session`) as the head says: every column
        (``"all"``), the mean counts only (``True``) or none. ``sessions``: one label per row, None = one session."""
        mode = self.features.get("session_relative", False)
        x = np.array(features, dtype=np.float64, copy=True)
        if mode == "all":
            return relative_to_session(x, sessions, columns=None)
        if mode and self.features["kind"] != "encoder":
            x[:, self._statistics_columns()] = self._range_view(x, sessions)  # the mean counts only
        return x

    def featurise(self, images: Sequence[np.ndarray], sessions: Sequence[str] | None = None,
                  coverage: Sequence[float] | None = None) -> np.ndarray:
        """Features [N, D] of micrographs (2-D arrays in counts) scored together (``sessions``: see
        :meth:`session_features`; ``coverage``: see :meth:`absolute_features`)."""
        return self.session_features(self.absolute_features(images, coverage), sessions)

    def fit(self, images: Sequence[np.ndarray], labels: Sequence[Any], sessions: Sequence[str] | None = None,
            seed: int = 0, coverage: Sequence[float] | None = None) -> "CurationHead":
        """Train the probe on micrographs (counts) and their labels (1/0 or quality classes), recording the
        image statistics' training range (module docstring) -> self."""
        absolute = self.absolute_features(images, coverage)
        if self.features["kind"] != "encoder":
            view = self._range_view(absolute, sessions)
            self.features["range"] = {"mean": view.mean(axis=0).tolist(),
                                      "std": np.maximum(view.std(axis=0), 1e-12).tolist()}
        self.probe.fit(self.session_features(absolute, sessions), labels, seed)
        return self

    def scores(self, images: Sequence[np.ndarray], sessions: Sequence[str] | None = None,
               coverage: Sequence[float] | None = None) -> np.ndarray:
        """P(accept) per micrograph -> [N]."""
        return self.probe.scores(self.featurise(images, sessions, coverage))

    def _range_view(self, absolute: np.ndarray, sessions: Sequence[str] | None) -> np.ndarray:
        """The image statistics of :meth:`absolute_features` as the training range sees them: the mean counts
        relative to the session when the head takes any feature relative to it, the rest as measured."""
        view = np.asarray(absolute, dtype=np.float64)[:, self._statistics_columns()]
        return relative_to_session(view, sessions) if self.features.get("session_relative", False) else view

    def out_of_range(self, absolute: np.ndarray, sessions: Sequence[str] | None = None,
                     z_max: float = OUT_OF_RANGE_Z) -> list[str]:
        """Per row of ``absolute`` [N, D] (from :meth:`absolute_features`, scored together as ``sessions``): ""
        when every image statistic lies within ``z_max`` training standard deviations of its training mean,
        else the farthest one, e.g. ``"log10_mean_counts z=-11.2"`` (module docstring). A head without image
        statistics returns all ""."""
        if self.features["kind"] == "encoder":
            return [""] * len(absolute)
        names = self._statistics_names()
        view = self._range_view(absolute, sessions)
        if "range" in self.features:
            mean, std = (np.asarray(self.features["range"][k], dtype=np.float64) for k in ("mean", "std"))
        elif self.features.get("session_relative", False) == "all":
            raise CryolibError(f"curation head {self.name!r} stores no training range; train it with "
                               "CurationHead.fit")
        else:  # a head written before the range was stored: its probe saw these very features
            mean, std = self.probe.mean[self._statistics_columns()], self.probe.std[self._statistics_columns()]
        z = (view - mean) / std
        worst = np.abs(z).argmax(axis=1)
        return [f"{names[j]} z={z[i, j]:+.1f}" if abs(z[i, j]) > z_max else "" for i, j in enumerate(worst)]


def save_curation_head(path: str | os.PathLike, head: CurationHead) -> Path:
    """Write ``head`` to ``path`` atomically (module docstring); returns the path."""
    state = {k: torch.as_tensor(v, dtype=torch.float64) if isinstance(v, np.ndarray) else v
             for k, v in head.probe.state_dict().items()}
    obj = {"format": HEAD_FORMAT, "name": head.name, "threshold": float(head.threshold),
           "features": json.loads(json.dumps(head.features)), "encoder": head.encoder,
           "encoder_sha256": head.encoder_sha256, "probe": state,
           "provenance": {"cryolib_version": cryolib.__version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S")},
           "card": json.loads(json.dumps(dict(head.card), default=str))}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    log.info("wrote curation head %s (%s features, encoder %s)", path, head.features["kind"], head.encoder)
    return Path(path)


def _read(path: Path) -> Mapping[str, Any]:
    obj = load_torch_file(path, "curation head", "train one (cryolib.studies.draco_curation) or fix the path",
                          "curation head")
    if not isinstance(obj, dict) or obj.get("format") != HEAD_FORMAT:
        raise CryolibError(f"{path} is not a curation head ({HEAD_FORMAT}); pass a file written by save_curation_head")
    return obj


def load_curation_head(path: str | os.PathLike | None = None) -> CurationHead:
    """Read a curation head (default: the shipped ``cryolib/assets/draco_curation.pt``).

    The encoder is not loaded here (see :meth:`CurationHead.load_encoder`), but its file must exist.
    """
    if path is None and not DEFAULT_HEAD.is_file():
        raise CryolibError(f"the shipped curation head {DEFAULT_HEAD} does not exist yet: notebook 06 writes it "
                           "(install_head=True); pass --checkpoint with a curation head file")
    path = Path(path) if path is not None else DEFAULT_HEAD
    obj = _read(path)
    probe = LinearProbe.from_state({k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in obj["probe"].items()})
    head = CurationHead(name=str(obj["name"]), probe=probe, features=dict(obj["features"]), encoder=obj.get("encoder"),
                        encoder_sha256=obj.get("encoder_sha256"), threshold=float(obj["threshold"]),
                        card=dict(obj.get("card") or {}))
    if head.features["kind"] != "image_statistics":
        resolve_encoder(head.encoder)
    return head
