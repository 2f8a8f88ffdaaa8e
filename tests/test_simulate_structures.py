"""Pseudo-atomic particle models: physics constants, the procedural families, PDB/mmCIF loading."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from cryolib.core.errors import CryolibError
from cryolib.simulate import structures as S
from cryolib.simulate import constants as C

DIAMETER_A = 120.0  # small enough for fast tests, large enough for every family's features


@pytest.fixture(scope="module")
def models() -> dict[str, S.Structure]:
    return {f: S.make_structure(f, DIAMETER_A, np.random.default_rng(7)) for f in S.FAMILIES}


def test_peng_coefficients_give_textbook_potentials():
    fe0 = {el: sum(a) for el, a in S.PENG_1996_A.items()}
    assert fe0["C"] == pytest.approx(2.509, abs=2e-3)
    assert fe0["N"] == pytest.approx(2.214, abs=2e-3)
    assert fe0["O"] == pytest.approx(1.983, abs=2e-3)
    assert S.atom_potential_VA3("C") == pytest.approx(47.878 * fe0["C"])
    # Ice: H2O at 1 g/cm³ (29.9 Å³ per molecule) with the same factors.
    water = (S.atom_potential_VA3("O") + 2 * S.atom_potential_VA3("H")) / (18.015 / 0.60221)
    assert water == pytest.approx(S.ICE_MEAN_INNER_POTENTIAL_V, rel=0.01)
    # Protein: mean inner potential 6.5-7 V, about +200-250 V·Å³ net per residue, 1.21 Å³/Da.
    residue_potential = C._RES_POT
    assert 850 < residue_potential < 950
    assert 6.5 < residue_potential / S.RESIDUE_VOLUME_A3 < 7.0
    assert 200 < S.PROTEIN_DELTA_V * S.RESIDUE_VOLUME_A3 < 250
    assert S.RESIDUE_VOLUME_A3 == pytest.approx(1.21 * 111, rel=0.02)
    assert S.RNA_DELTA_V > 1.4 * S.PROTEIN_DELTA_V  # phosphorus-rich RNA is denser
    assert S.DETERGENT_CORE_DELTA_V < 0 < S.DETERGENT_HEAD_DELTA_V


@pytest.mark.parametrize("family", S.FAMILIES)
def test_family_size_weight_and_centring(models, family):
    s = models[family]
    assert s.family == family
    assert s.diameter_A == pytest.approx(DIAMETER_A, rel=0.05)
    assert s.total_weight_VA3 > 0, "protein is denser than ice"
    assert len(s.coords_A) > 100
    assert np.all((s.sigma_A > 1.0) & (s.sigma_A < 3.5))
    centre = (s.coords_A * np.abs(s.weights_VA3)[:, None]).sum(0) / np.abs(s.weights_VA3).sum()
    assert np.linalg.norm(centre) < 1e-6 * DIAMETER_A


@pytest.mark.parametrize("family", ["globular", "membrane_channel"])
def test_family_is_deterministic_per_seed(models, family):
    again = S.make_structure(family, DIAMETER_A, np.random.default_rng(7))
    np.testing.assert_array_equal(again.coords_A, models[family].coords_A)
    np.testing.assert_array_equal(again.weights_VA3, models[family].weights_VA3)
    assert again.fingerprint == models[family].fingerprint
    other = S.make_structure(family, DIAMETER_A, np.random.default_rng(8))
    assert other.fingerprint != models[family].fingerprint
    assert len(other.coords_A) != len(again.coords_A) or not np.allclose(other.coords_A, again.coords_A)


def test_diameter_is_met_across_sizes():
    for family, d in [("globular", 60.0), ("ribosome", 260.0), ("elongated_trimer", 84.0), ("filament", 200.0)]:
        s = S.make_structure(family, d, np.random.default_rng(1))
        assert s.diameter_A == pytest.approx(d, rel=0.05), family


def test_globular_interior_has_protein_density(models):
    s = models["globular"]
    r = np.linalg.norm(s.coords_A, axis=1)
    inner = r < 0.2 * DIAMETER_A  # well inside the body
    expected = 4 / 3 * np.pi * (0.2 * DIAMETER_A) ** 3 / S.RESIDUE_VOLUME_A3
    assert inner.sum() == pytest.approx(expected, rel=0.2)
    per_atom = s.weights_VA3.mean()
    assert per_atom == pytest.approx(S.PROTEIN_DELTA_V * S.RESIDUE_VOLUME_A3, rel=0.05)


def _shell_density(s: S.Structure, r0: float, r1: float) -> float:
    r = np.linalg.norm(s.coords_A, axis=1)
    sel = (r >= r0) & (r < r1)
    return s.weights_VA3[sel].sum() / (4 / 3 * np.pi * (r1**3 - r0**3))


def test_cages_are_hollow(models):
    cage = models["octahedral_cage"]
    assert _shell_density(cage, 0, 0.25 * DIAMETER_A) == 0.0
    assert _shell_density(cage, 0.33 * DIAMETER_A, 0.48 * DIAMETER_A) > 1.0  # V (≈ 1.7 for a full shell)
    capsid = models["icosahedral_capsid"]
    interior = _shell_density(capsid, 0, 0.3 * DIAMETER_A)
    shell = _shell_density(capsid, 0.42 * DIAMETER_A, 0.49 * DIAMETER_A)
    assert 0 < interior < 0.6 * shell  # sparse RNA inside a protein shell


def _histogram(s: S.Structure, bin_A: float = 10.0) -> np.ndarray:
    edges = np.arange(-6, 7) * bin_A
    hist, _ = np.histogramdd(s.coords_A, bins=(edges,) * 3, weights=s.weights_VA3)
    return hist  # axes x, y, z


def test_symmetric_families_match_their_rotations(models):
    """432 cage: a 90° turn about z; C4 channel likewise (compare binned potential)."""
    for family in ("octahedral_cage", "membrane_channel"):
        s = models[family]
        # re-centre on the symmetry axis/centre (the centre of |weight| may be off by noise)
        h = _histogram(s)
        turned = np.rot90(h, k=1, axes=(0, 1))
        corr = np.corrcoef(h.ravel(), turned.ravel())[0, 1]
        assert corr > 0.8, family


def test_membrane_channel_has_a_low_potential_micelle(models):
    s = models["membrane_channel"]
    assert (s.weights_VA3 < 0).sum() > 50  # detergent tails below ice
    negative = s.coords_A[s.weights_VA3 < 0]
    assert np.abs(negative[:, 2]).max() < 0.25 * DIAMETER_A  # a belt around the membrane plane
    detergent = s.sigma_A >= 2.5  # tails and heads; protein pseudo-atoms are sharper
    rim = np.hypot(s.coords_A[detergent, 0], s.coords_A[detergent, 1]).max()
    assert rim > 0.42 * DIAMETER_A  # the micelle sets the diameter
    mean_delta_V = s.weights_VA3[detergent].mean() / S.RESIDUE_VOLUME_A3
    assert -0.3 <= mean_delta_V <= 0.3  # low contrast against ice


def test_ribosome_is_rna_rich(models):
    protein_residue = S.PROTEIN_DELTA_V * S.RESIDUE_VOLUME_A3
    w = models["ribosome"].weights_VA3
    assert w.mean() > 1.3 * protein_residue
    assert (w > 1.3 * protein_residue).mean() > 0.4


def test_elongated_and_filament_are_elongated(models):
    for family in ("elongated_trimer", "filament"):
        c = models[family].coords_A
        assert np.ptp(c[:, 2]) > 2.0 * np.ptp(c[:, 0]), family


@pytest.mark.parametrize("family, diameter", [("spaceship", 100.0), ("globular", 0.0), ("globular", -5.0),
                                              ("globular", 5000.0), ("globular", float("nan"))])
def test_bad_family_or_diameter(family, diameter):
    with pytest.raises(CryolibError) as err:
        S.make_structure(family, diameter, np.random.default_rng(0))
    if family == "spaceship":
        assert "octahedral_cage" in str(err.value)


def test_structure_validates_and_is_immutable():
    with pytest.raises(CryolibError):
        S.Structure(np.zeros((3, 3)), np.ones(2), np.ones(3), "bad", "test")
    with pytest.raises(CryolibError):
        S.Structure(np.zeros((1, 3)), np.ones(1), np.zeros(1), "bad", "test")
    s = S.Structure(np.zeros((1, 3)), np.ones(1), np.ones(1), "ok", "test")
    with pytest.raises(ValueError):
        s.coords_A[0, 0] = 1.0


PDB_TEXT = """\
ATOM      1  N   ALA A   1      11.104   6.134  -6.504  1.00 20.00           N
ATOM      2  CA  ALA A   1      11.639   6.071  -5.147  1.00 20.00           C
ATOM      3  C   ALA A   1      13.140   5.771  -5.123  1.00 20.00           C
ATOM      4  O   ALA A   1      13.621   4.947  -5.898  1.00 20.00           O
ATOM      5  CB  ALA A   1      11.340   7.391  -4.427  1.00 40.00           C
ATOM      6  H   ALA A   1      10.200   6.500  -6.800  1.00 20.00           H
HETATM    7 FE   FE2 A 101      15.000   5.000  -3.000  0.50 30.00          FE
HETATM    8  O   HOH A 201      20.000   9.000   0.000  1.00 30.00           O
END
"""


def _expected_weight(element: str) -> float:
    h_share = C._RES_MASS / (C._RES_MASS - 7.76 * 1.008)
    volume = S.PROTEIN_VOLUME_A3_PER_DA * S.ATOMIC_MASS_DA[element] * h_share
    return S.atom_potential_VA3(element) - S.ICE_MEAN_INNER_POTENTIAL_V * volume


def test_load_structure_from_pdb(tmp_path, caplog):
    path = tmp_path / "ala.pdb"
    path.write_text(PDB_TEXT)
    with caplog.at_level(logging.WARNING):
        s = S.load_structure(path)
    assert "Fe" in caplog.text  # unknown element → carbon, with a warning
    assert len(s.coords_A) == 6  # 5 heavy atoms + Fe; the hydrogen and the water are skipped
    assert s.family == "pdb" and s.name == "ala"
    np.testing.assert_allclose(s.weights_VA3[:5], [_expected_weight(e) for e in "NCCOC"])
    assert s.weights_VA3[5] == pytest.approx(0.5 * _expected_weight("C"))  # occupancy 0.5
    np.testing.assert_allclose(s.sigma_A[0], np.sqrt(20 / (8 * np.pi**2) + 0.5))
    np.testing.assert_allclose(s.sigma_A[4], np.sqrt(40 / (8 * np.pi**2) + 0.5))
    # centred on the (united-atom, occupancy-weighted) centre of mass
    h_mass = np.array([S.ATOMIC_MASS_DA[e] for e in "NCCOC"] + [0.5 * S.ATOMIC_MASS_DA["C"]])
    np.testing.assert_allclose((s.coords_A * h_mass[:, None]).sum(0), 0, atol=1e-9)
    assert s.total_weight_VA3 > 0


def test_load_structure_from_mmcif_matches_pdb(tmp_path):
    import gemmi  # a hard dependency (pyproject.toml): a missing gemmi must fail, not skip
    pdb = tmp_path / "ala.pdb"
    pdb.write_text(PDB_TEXT)
    st = gemmi.read_structure(str(pdb))
    st.setup_entities()
    cif = tmp_path / "ala.cif"
    st.make_mmcif_document().write_file(str(cif))
    a, b = S.load_structure(pdb), S.load_structure(cif)
    np.testing.assert_allclose(a.weights_VA3, b.weights_VA3)
    np.testing.assert_allclose(a.coords_A, b.coords_A, atol=1e-3)


def test_load_structure_bad_inputs(tmp_path):
    with pytest.raises(CryolibError, match="not found"):
        S.load_structure(tmp_path / "missing.pdb")
    garbage = tmp_path / "garbage.pdb"
    garbage.write_text("hello\nthis is not a model\n")
    with pytest.raises(CryolibError, match="no .*atoms"):
        S.load_structure(garbage)
    broken = tmp_path / "broken.pdb"
    broken.write_text(PDB_TEXT.splitlines()[0] + "\nATOM  XXXXX\n")
    with pytest.raises(CryolibError, match="cannot read"):
        S.load_structure(broken)
