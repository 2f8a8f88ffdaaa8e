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

from cryolib.core.errors import CryolibError
from cryolib.simulate.constants import (  # noqa: F401  (re-exported: the model's constants)
    POTENTIAL_PER_FE_V_A2,
    PENG_1996_A,
    ATOMIC_MASS_DA,
    ICE_MEAN_INNER_POTENTIAL_V,
    PROTEIN_VOLUME_A3_PER_DA,
    RNA_VOLUME_A3_PER_DA,
    RESIDUE_COMPOSITION,
    NUCLEOTIDE_COMPOSITION,
    DETERGENT_CORE_DELTA_V,
    DETERGENT_HEAD_DELTA_V,
    FAMILIES,
    MAX_DIAMETER_A,
    WATER_RESIDUES,
    atom_potential_VA3,
    _composition_potential,
    RESIDUE_VOLUME_A3,
    PROTEIN_DELTA_V,
    RNA_DELTA_V,
    _RES_H_SHARE,
    _NUC_H_SHARE,
)
from cryolib.simulate.families import BUILDERS

log = logging.getLogger(__name__)



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
