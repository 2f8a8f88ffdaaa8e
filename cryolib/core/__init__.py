"""The bottom layer: errors, atomic writes, provenance, profiles, results."""
