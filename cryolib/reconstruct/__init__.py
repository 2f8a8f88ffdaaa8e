"""3-D reconstruction from picked or denoised particles, and tomography (DRACO Tables 1 and 3, Figure 8).

The single-particle path uses the simulator's known poses: it judges picks and denoising by the resolution
of the map they give, without a refinement step. The tomography path reconstructs tilt series by weighted
back-projection. Modules are imported by name (``from cryolib.reconstruct import ...``).
"""
