"""Physics-based simulation of cryo-EM movies and micrographs with exact ground truth.

Modules: ``structures`` (pseudo-atomic particle families, PDB/mmCIF), ``potential``
(Coulomb potential and projections), ``optics`` (CTF, envelope, detector MTF),
``sample`` (ice, carbon, contaminants, particle placement), ``movie`` (drift and
per-frame Poisson counts) and ``micrograph`` (all of it composed, one micrograph).
"""
