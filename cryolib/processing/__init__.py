"""Processing of micrographs and movies: motion correction, preprocessing, tiling, Fourier helpers."""
