"""Pseudo-atomic particle models: procedural shape families and PDB/mmCIF models.

A :class:`Structure` is a set of Gaussian pseudo-atoms, each with its *net* integrated
Coulomb potential relative to the vitreous ice it displaces (V·Å³). Independent-atom
model: an atom integrates to ``47.878 V·Å² × f_e(0)`` (Peng et al. 1996 factors).
Biomolecules follow the united-atom convention of deposited models (heavy atoms; their
volume counts the bonded hydrogens): protein mean inner potential 6.6 V, +233 V·Å³ net
per residue.

Here: the physical constants and the Peng table, :class:`Structure`, :data:`FAMILIES`,
:func:`make_structure` (one procedural particle of a family) and :func:`load_structure`
(PDB/mmCIF). The shape builders of the families, filled with one pseudo-atom per residue
volume (134.5 Å³), live in :mod:`cryolib.simulate.families`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
import numpy as np

from cryolib.errors import CryolibError

log = logging.getLogger(__name__)

#: h²/(2π m₀ e) in V·Å²: ∫V d³r = (h²/2π m₀ e) f_e(0) (Kirkland, Advanced Computing in EM).
POTENTIAL_PER_FE_V_A2 = 47.878

#: Peng, Ren, Dudarev & Whelan (1996), Acta Cryst. A52:257, Table 1 (neutral atoms, 0 < s < 2 Å⁻¹):
#: the five ``a_i`` coefficients [Å] of f_e(s) = Σ a_i exp(-b_i s²); f_e(0) = Σ a_i.
PENG_1996_A: dict[str, tuple[float, ...]] = {
    "H": (0.0349, 0.1201, 0.1970, 0.0573, 0.1195),
    "C": (0.0893, 0.2563, 0.7570, 1.0487, 0.3575),
    "N": (0.1022, 0.3219, 0.7982, 0.8197, 0.1715),
    "O": (0.0974, 0.2921, 0.6910, 0.6990, 0.2039),
    "P": (0.2548, 0.6106, 1.4541, 2.3204, 0.8477),
    "S": (0.2497, 0.5628, 1.3899, 2.1865, 0.7715),
}
#: Standard atomic weights (Da).
ATOMIC_MASS_DA = {"H": 1.008, "C": 12.011, "N": 14.007, "O": 15.999, "P": 30.974, "S": 32.06}

#: Mean inner potential of vitreous ice (V): the independent-atom value for H₂O at
#: 1.00 g/cm³ from the Peng (1996) factors, 47.878 × (f_O + 2 f_H) / 29.9 Å³ = 4.87 V
#: (vitreous ice is 0.93-1.0 g/cm³), the ≈ 4.9 V used for ice in cryo-EM simulators.
#: Bonding lowers measured values (≈ 3.5-4.5 V); we keep the model consistent instead.
ICE_MEAN_INNER_POTENTIAL_V = 4.87

PROTEIN_VOLUME_A3_PER_DA = 1.21  # partial specific volume 0.73 cm³/g
RNA_VOLUME_A3_PER_DA = 0.95  # partial specific volume 0.57 cm³/g
#: Average protein residue (111 Da); hydrogens count for the mass and volume only.
RESIDUE_COMPOSITION = {"C": 4.94, "N": 1.36, "O": 1.48, "S": 0.04, "H": 7.76}
#: Mean RNA nucleotide in a chain (A, C, G, U averaged).
NUCLEOTIDE_COMPOSITION = {"C": 9.5, "N": 3.75, "O": 7.0, "P": 1.0, "H": 11.75}
#: Detergent/lipid potential relative to ice (V), chosen: alkyl tails are less dense than
#: ice (CH₂: 120 V·Å³ in 27 Å³ = 4.45 V heavy-atom), sugar/phosphate heads denser.
DETERGENT_CORE_DELTA_V = -0.3
DETERGENT_HEAD_DELTA_V = +0.3

FAMILIES: tuple[str, ...] = (
    "globular", "octahedral_cage", "icosahedral_capsid", "elongated_trimer", "membrane_channel", "filament", "ribosome",
)  # fmt: skip
MAX_DIAMETER_A = 2000.0
WATER_RESIDUES = frozenset({"HOH", "WAT", "DOD", "H2O"})


def atom_potential_VA3(element: str) -> float:
    """Integrated Coulomb potential of one neutral atom (V·Å³), Peng (1996)."""
    return POTENTIAL_PER_FE_V_A2 * float(sum(PENG_1996_A[element]))


def _composition_potential(comp: dict[str, float], heavy_only: bool = True) -> tuple[float, float]:
    """(integrated potential V·Å³, mass Da) of a composition; the mass always counts H."""
    pot = sum(n * atom_potential_VA3(el) for el, n in comp.items() if not (heavy_only and el == "H"))
    mass = sum(n * ATOMIC_MASS_DA[el] for el, n in comp.items())
    return pot, mass


_RES_POT, _RES_MASS = _composition_potential(RESIDUE_COMPOSITION)
_NUC_POT, _NUC_MASS = _composition_potential(NUCLEOTIDE_COMPOSITION)
RESIDUE_VOLUME_A3 = PROTEIN_VOLUME_A3_PER_DA * _RES_MASS  # ≈ 134.5 Å³
PROTEIN_DELTA_V = _RES_POT / RESIDUE_VOLUME_A3 - ICE_MEAN_INNER_POTENTIAL_V  # ≈ +1.73 V
RNA_DELTA_V = _NUC_POT / (RNA_VOLUME_A3_PER_DA * _NUC_MASS) - ICE_MEAN_INNER_POTENTIAL_V  # ≈ +3.2 V
_RES_H_SHARE = _RES_MASS / (_RES_MASS - RESIDUE_COMPOSITION["H"] * ATOMIC_MASS_DA["H"])  # united-atom mass factor
_NUC_H_SHARE = _NUC_MASS / (_NUC_MASS - NUCLEOTIDE_COMPOSITION["H"] * ATOMIC_MASS_DA["H"])


@dataclass(frozen=True, eq=False)
class Structure:
    """Gaussian pseudo-atoms of one particle, centred on its centre of mass.

    Compared by identity; :attr:`fingerprint` identifies the content (for caches).
    """

    coords_A: np.ndarray  # (N, 3) x, y, z (Å)
    weights_VA3: np.ndarray  # (N,) net integrated potential relative to ice (V·Å³)
    sigma_A: np.ndarray  # (N,) Gaussian standard deviation (Å)
    name: str
    family: str

    def __post_init__(self) -> None:
        coords = np.ascontiguousarray(self.coords_A, dtype=np.float64)
        weights = np.ascontiguousarray(self.weights_VA3, dtype=np.float64)
        sigma = np.ascontiguousarray(self.sigma_A, dtype=np.float64)
        n = coords.shape[0] if coords.ndim == 2 else -1
        if coords.ndim != 2 or coords.shape[1] != 3 or weights.shape != (n,) or sigma.shape != (n,):
            raise CryolibError(
                f"Structure {self.name!r}: need coords (N, 3), weights (N,) and sigma (N,); "
                f"got {coords.shape}, {weights.shape}, {sigma.shape}"
            )
        if n == 0 or not (np.isfinite(coords).all() and np.isfinite(weights).all()) or (sigma <= 0).any():
            raise CryolibError(f"Structure {self.name!r}: empty, non-finite or sigma <= 0")
        for name, arr in (("coords_A", coords), ("weights_VA3", weights), ("sigma_A", sigma)):
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    @property
    def diameter_A(self) -> float:
        """2 × the largest distance of an atom centre from the origin (Å)."""
        return 2.0 * float(np.sqrt((self.coords_A**2).sum(axis=1).max()))

    @property
    def total_weight_VA3(self) -> float:
        """Net integrated potential of the whole particle relative to ice (V·Å³)."""
        return float(self.weights_VA3.sum())

    @functools.cached_property
    def fingerprint(self) -> str:
        """Short hash of the atoms, a cache key that survives copies."""
        h = hashlib.sha1()
        for arr in (self.coords_A, self.weights_VA3, self.sigma_A):
            h.update(arr.tobytes())
        return h.hexdigest()[:16]


def _centred(coords: np.ndarray, mass: np.ndarray) -> np.ndarray:
    return coords - (coords * mass[:, None]).sum(axis=0) / mass.sum()


def make_structure(family: str, diameter_A: float, rng: np.random.Generator) -> Structure:
    """A procedural particle of ``family`` whose diameter is ``diameter_A`` (Å).

    The shape is built, measured and rebuilt at the corrected size (same sub-seed), then
    scaled by the last few % so the diameter is exact while the residue density stays
    protein-like. Centred on the centre of |net potential| (≈ the centre of mass).
    """
    from cryolib.simulate.families import BUILDERS  # here, not at the top: families imports our constants

    if family not in BUILDERS:
        raise CryolibError(f"unknown structure family {family!r}; choose one of {', '.join(FAMILIES)}")
    if not np.isfinite(diameter_A) or not 0 < diameter_A <= MAX_DIAMETER_A:
        raise CryolibError(f"diameter_A={diameter_A!r} for {family!r}: give a particle diameter in (0, {MAX_DIAMETER_A:g}] Å")
    seed = int(rng.integers(0, 2**63 - 1))
    size = float(diameter_A)
    for _ in range(2):
        coords, weights, sigma = BUILDERS[family](size, np.random.default_rng(seed))
        if len(coords) == 0:
            raise CryolibError(f"diameter_A={diameter_A:g} is too small for a {family!r} model (no residues)")
        coords = _centred(coords, np.abs(weights))
        measured = 2 * np.sqrt((coords**2).sum(axis=1).max())
        size *= diameter_A / measured
    coords = coords * (diameter_A / measured)
    log.debug("%s %.0f Å: %d pseudo-atoms", family, diameter_A, len(coords))
    return Structure(coords, weights, sigma, name=f"{family}-{diameter_A:.0f}A", family=family)


def _read_atoms(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Elements, positions (Å), B-factors (Å²), occupancies and a nucleic-acid flag of model 1."""
    import gemmi

    try:
        st = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise CryolibError(f"cannot read {path} as PDB/mmCIF ({exc}); check that the file is a valid model") from exc
    if len(st) == 0:
        raise CryolibError(f"{path} has no models; check that it is a PDB/mmCIF coordinate file")
    elems, pos, b, occ, nucleic = [], [], [], [], []
    for chain in st[0]:
        for res in chain:
            if res.name in WATER_RESIDUES:
                continue  # waters are part of the ice
            info = gemmi.find_tabulated_residue(res.name)
            is_na = bool(info is not None and info.is_nucleic_acid())
            for atom in res:
                if atom.element.is_hydrogen:
                    continue  # united-atom convention: H is counted in its heavy atom's volume
                elems.append(atom.element.name.capitalize())
                pos.append((atom.pos.x, atom.pos.y, atom.pos.z))
                b.append(atom.b_iso)
                occ.append(atom.occ)
                nucleic.append(is_na)
    if not elems:
        raise CryolibError(f"{path} contains no (non-water, non-hydrogen) atoms; is it a coordinate file?")
    return elems, np.array(pos, float), np.array(b, float), np.array(occ, float), np.array(nucleic)


def load_structure(path: str | Path, ice_potential_V: float = ICE_MEAN_INNER_POTENTIAL_V) -> Structure:
    """Atoms of the first model of a PDB/mmCIF file as Gaussians (gemmi).

    Net weight = occupancy × (47.878 f_e(0) − ice_potential_V × volume), with the volume
    1.21 Å³/Da (0.95 for nucleic acids) × the united-atom mass (element mass × the
    hydrogen share of protein/RNA). Unknown elements are treated as carbon (warning);
    hydrogens and waters are skipped. sigma² = B/(8π²) + 0.5 Å². Centred on the mass.
    """
    path = Path(path)
    if not path.is_file():
        raise CryolibError(f"structure file not found: {path}; give the path to a .pdb or .cif model")
    elems, pos, b, occ, nucleic = _read_atoms(path)
    unknown = sorted({e for e in elems if e not in PENG_1996_A})
    if unknown:
        log.warning("%s: no Peng (1996) factors for %s; treated as carbon", path, ", ".join(unknown))
    elems = [e if e in PENG_1996_A else "C" for e in elems]
    pot = np.array([atom_potential_VA3(e) for e in elems])
    mass = np.array([ATOMIC_MASS_DA[e] for e in elems]) * np.where(nucleic, _NUC_H_SHARE, _RES_H_SHARE)
    volume = mass * np.where(nucleic, RNA_VOLUME_A3_PER_DA, PROTEIN_VOLUME_A3_PER_DA)
    weights = occ * (pot - ice_potential_V * volume)
    sigma = np.sqrt(np.clip(b, 0, None) / (8 * np.pi**2) + 0.5)
    return Structure(_centred(pos, mass * np.clip(occ, 1e-6, None)), weights, sigma, name=path.stem, family="pdb")
