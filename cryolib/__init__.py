"""cryolib: a runnable study of self-supervised cryo-EM models (Cryo-EMMAE, DRACO).

Library for simulation, pretraining, denoising, picking and curation; the
notebooks in ``notebooks/`` and the ``cryolib`` command call the same functions.
"""

from cryolib.core.errors import CryolibError
from cryolib.core.reproducibility import seed_everything

__version__ = "0.1.0"
__all__ = ["CryolibError", "seed_everything", "__version__"]
