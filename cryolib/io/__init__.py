"""Files in and out: micrographs, movies and stacks (MRC/TIFF), coordinates (STAR/CSV/BOX), the dataset registry."""

from cryolib.io.coordinates import read_coordinates, write_coordinates  # noqa: F401
from cryolib.io.micrographs import list_micrographs, micrograph_stem, read_micrograph, write_mrc  # noqa: F401
