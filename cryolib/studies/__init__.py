"""Each paper's experiment designs (tables, ablations, claims): what the notebooks call."""
