"""Physics-based simulation of cryo-EM movies and micrographs with exact ground truth.

Modules: ``structures`` (pseudo-atomic particles: procedural families, PDB/mmCIF),
``families`` (the families' shape builders), ``potential`` (Coulomb potential and
projections), ``optics`` (CTF, envelope, detector MTF), ``sample`` (ice, carbon,
contaminants, particle placement), ``movie`` (drift and per-frame Poisson counts) and
``micrograph`` (all of it composed, one micrograph).
"""
