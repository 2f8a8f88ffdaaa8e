"""Physical constants of the specimen model: Peng (1996) scattering factors, mean inner potentials,
residue/nucleotide compositions and the particle family names.

Independent-atom model: an atom integrates to ``47.878 V·Å² × f_e(0)``. Biomolecules follow the
united-atom convention of deposited models (heavy atoms; their volume counts the bonded hydrogens).
Used by :mod:`cryolib.simulate.structures` and the shape builders in :mod:`cryolib.simulate.families`.
"""

from __future__ import annotations

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
