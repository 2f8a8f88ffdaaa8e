"""Tests for cryolib.pick.registry: pickers by name, reference calibration of the threshold, input checks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryolib.core.errors import CryolibError
from cryolib.evaluate.metrics import match_picks
from cryolib.io.micrographs import write_mrc
from cryolib.pick import blob, get_picker, pick_micrographs, picker_names, topaz
from cryolib.pick.registry import PICKERS, Picker, register_picker
from pick_synthetic import crowded_blob_micrograph, synthetic_micrograph

D = 24.0  # px


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    """Two crowded micrographs (reference, target) as MRC files, with their true centres."""
    folder = tmp_path_factory.mktemp("crowded")
    out = []
    for seed, name in ((0, "ref"), (1, "target")):
        image, truth = crowded_blob_micrograph(seed, d=D)
        out.append((write_mrc(folder / f"{name}.mrc", image, 1.0), truth))
    return out


def test_the_three_methods_are_registered_with_their_operating_points():
    assert {"cryoemmae", "blob", "topaz"} <= set(picker_names())
    assert picker_names() == tuple(sorted(picker_names()))
    for name in ("cryoemmae", "blob", "topaz"):
        picker = get_picker(name)
        assert isinstance(picker, Picker) and type(picker) is PICKERS[name] and picker.name == name
    assert get_picker("blob").default_threshold == blob.DEFAULT_THRESHOLD == 3.5
    assert get_picker("topaz").default_threshold == 0.0
    assert get_picker("cryoemmae").default_threshold is None


def test_unknown_name_names_the_choices(tmp_path):
    for call in (lambda: get_picker("crYOLO"), lambda: pick_micrographs("crYOLO", [tmp_path / "a.mrc"], D)):
        with pytest.raises(CryolibError, match="unknown picking method 'crYOLO'") as err:
            call()
        assert all(name in str(err.value) for name in ("cryoemmae", "blob", "topaz"))


class _Grid(Picker):
    """A picker for the test: a pick every 40 px along the diagonal, scored by its index."""

    name = "diagonal_test"
    default_threshold = 2.0

    def pick_all(self, paths, diameter_px, state, *, seed=0, progress=True):
        xy = np.arange(5) * 40.0 + 20
        return {p.stem: pd.DataFrame({"x": xy, "y": xy, "diameter": diameter_px, "score": np.arange(5.0)})
                for p in paths}


def test_a_new_picker_registers_itself(tmp_path):
    path = write_mrc(tmp_path / "mic.mrc", np.random.default_rng(0).normal(size=(256, 256)).astype(np.float32), 1.0)
    assert "diagonal_test" not in picker_names()
    try:
        register_picker(_Grid)
        assert "diagonal_test" in picker_names()
        picks = pick_micrographs("diagonal_test", [path], D, progress=False)["mic"]
        assert picks["score"].tolist() == [2.0, 3.0, 4.0] and picks.attrs["threshold"] == 2.0
        assert len(pick_micrographs("diagonal_test", [path], D, threshold=-math.inf)["mic"]) == 5
        truth = pd.DataFrame({"x": [140.0, 180.0], "y": [140.0, 180.0]})  # the picks scored 3 and 4
        assert get_picker("diagonal_test").calibrate((path, truth), D) == 3.0
        calibrated = pick_micrographs("diagonal_test", [path], D, reference=(path, truth.iloc[1:]))["mic"]
        assert calibrated["score"].tolist() == [4.0] and calibrated.attrs["threshold"] == 4.0
        with pytest.raises(CryolibError, match="two pickers are named 'diagonal_test'"):
            register_picker(type("Other", (_Grid,), {}))
        with pytest.raises(CryolibError, match="takes no checkpoint"):
            pick_micrographs("diagonal_test", [path], D, checkpoint="x.pt")
    finally:
        PICKERS.pop("diagonal_test", None)
    with pytest.raises(CryolibError, match="Picker subclass"):
        register_picker(dict)  # type: ignore[arg-type]


def test_calibration_on_the_reference_helps_where_the_default_threshold_fails(crowded):
    (ref, ref_truth), (target, truth) = crowded
    t = get_picker("blob").calibrate((ref, ref_truth), D)
    assert 0.5 < t < blob.DEFAULT_THRESHOLD  # the crowded particles score below the documented 3.5
    every = pick_micrographs("blob", [target], D, threshold=-math.inf, progress=False)["target"]
    f1_calibrated = match_picks(every[every["score"] >= t], truth, D).f1
    f1_default = match_picks(every[every["score"] >= blob.DEFAULT_THRESHOLD], truth, D).f1
    assert f1_calibrated > 0.8 and f1_default < 0.5, (f1_calibrated, f1_default)  # measured 0.94 and 0.25


def test_reference_without_threshold_applies_the_calibrated_threshold(crowded):
    (ref, ref_truth), (target, _) = crowded
    t = get_picker("blob").calibrate((ref, ref_truth), D)
    with_ref = pick_micrographs("blob", [target], D, reference=(ref, ref_truth), progress=False)["target"]
    explicit = pick_micrographs("blob", [target], D, threshold=t, progress=False)["target"]
    default = pick_micrographs("blob", [target], D, progress=False)["target"]
    pd.testing.assert_frame_equal(with_ref, explicit)
    assert with_ref.attrs["threshold"] == t and default.attrs["threshold"] == blob.DEFAULT_THRESHOLD
    assert with_ref["score"].min() >= t and len(with_ref) > 2 * len(default)
    given = pick_micrographs("blob", [target], D, reference=(ref, ref_truth), threshold=3.5, progress=False)
    pd.testing.assert_frame_equal(given["target"], default)  # an explicit threshold wins over the reference


def test_every_input_is_checked_before_calibrating_or_picking(crowded, tmp_path, monkeypatch):
    (ref, ref_truth), (target, _) = crowded
    calls = []
    monkeypatch.setattr(blob.BlobMethod, "pick_all", lambda self, paths, *a, **k: calls.append(paths) or {})
    broken = tmp_path / "broken.mrc"
    broken.write_bytes(b"not an mrc file")
    cases = {
        "broken.mrc": dict(paths=[target, broken], reference=(ref, ref_truth)),
        "reference micrograph": dict(paths=[target], reference=(ref, ref_truth.assign(x=ref_truth.x + 1e4))),
        "at least one particle": dict(paths=[target], reference=(ref, ref_truth.iloc[:0])),
        "NaN/inf": dict(paths=[target], reference=(ref, ref_truth.assign(x=np.nan))),
        "pair": dict(paths=[target], reference=ref),
        "smaller than one particle diameter": dict(paths=[target], reference=(ref, ref_truth), diameter=500.0),
        "threshold is NaN": dict(paths=[target], reference=(ref, ref_truth), threshold=math.nan),
        "no micrographs to pick": dict(paths=[], reference=(ref, ref_truth)),
        "named 'target'": dict(paths=[target, target], reference=(ref, ref_truth)),
    }
    for message, kw in cases.items():
        with pytest.raises(CryolibError, match=message):
            pick_micrographs("blob", kw["paths"], kw.get("diameter", D), reference=kw["reference"],
                             threshold=kw.get("threshold"))
    assert calls == []


def test_no_match_on_the_reference_is_an_error_not_a_threshold(crowded):
    (ref, _), _ = crowded
    corner = pd.DataFrame({"x": [1.0], "y": [1.0]})  # blobs are never picked at the border
    with pytest.raises(CryolibError, match="matches one of its 1 particles"):
        get_picker("blob").calibrate((ref, corner), D)


def test_cryoemmae_has_no_threshold_to_calibrate(crowded):
    (ref, ref_truth), _ = crowded
    assert get_picker("cryoemmae").calibrate((ref, ref_truth), D) is None
    with pytest.raises(CryolibError, match="at least one particle"):
        get_picker("cryoemmae").calibrate((ref, ref_truth.iloc[:0]), D)


def test_topaz_calibrates_by_picking_the_reference_once(tmp_path, monkeypatch):
    paths, truths = [], []
    for seed in range(2):
        image, truth = synthetic_micrograph(seed, size=256, d=D, n=10)
        paths.append(write_mrc(tmp_path / f"mic{seed}.mrc", image, 1.0))
        truths.append(truth)
    calls = []
    real = topaz.pick_pretrained

    def spy(images, diameter_px, **kw):
        calls.append(([p.name for p in images], kw["threshold"]))
        return real(images, diameter_px, **kw)

    monkeypatch.setattr(topaz, "pick_pretrained", spy)
    t = get_picker("topaz").calibrate((paths[0], truths[0]), D)
    assert calls == [(["mic0.mrc"], -math.inf)]
    calls.clear()
    picks = pick_micrographs("topaz", paths, D, reference=(paths[0], truths[0]), progress=False)
    assert calls == [(["mic0.mrc"], -math.inf), (["mic0.mrc", "mic1.mrc"], -math.inf)]
    assert all(df.attrs["threshold"] == t and (df["score"] >= t).all() for df in picks.values())
    assert match_picks(picks["mic0"], truths[0], D).f1 > 0
