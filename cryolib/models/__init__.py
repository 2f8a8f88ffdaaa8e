"""Models: the shared ViT encoder/decoder (``vit``) and the pretraining objectives registered by name
(``objectives``: :func:`~cryolib.models.objectives.get_objective`, ``objective_names``; DRACO's module is
imported lazily by that registry, so importing ``cryolib.models`` stays light and free of cycles)."""
