"""Micrograph curation (DRACO 2024 §5.3): a linear head on a frozen encoder's embedding (and, in the
shipped head, image statistics beside it) that accepts or rejects micrographs.

``features`` (encoder embedding and image statistics), ``probe`` (:class:`LinearProbe`, 2-class or
over the quality classes, and the Table 4 metrics), ``head`` (the curation head file: probe +
encoder reference + its training-range check), ``resnet`` (the
ResNet18-from-scratch baseline) and ``select`` (:func:`curate_micrographs` and the files
``cryolib curate`` writes)."""

from cryolib.curate.features import encoder_features, image_statistics, radial_band_power
from cryolib.curate.head import CurationHead, load_curation_head, save_curation_head
from cryolib.curate.probe import LinearProbe, classification_metrics, per_class_table
from cryolib.curate.select import curate_micrographs, write_quality_csv, write_selection_star

__all__ = ["encoder_features", "image_statistics", "radial_band_power", "CurationHead", "load_curation_head",
           "save_curation_head", "LinearProbe", "classification_metrics", "per_class_table", "curate_micrographs",
           "write_quality_csv", "write_selection_star"]
