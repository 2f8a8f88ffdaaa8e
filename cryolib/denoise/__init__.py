"""Micrograph denoisers, registered by name (:mod:`cryolib.denoise.registry`): DRACO's zero-shot
denoiser and the plain MAE (``networks``, tiled by ``tiled``), Topaz-Denoise's shipped network
(``topaz``), a cryoSPARC-style low-pass and a best-case Gaussian (``classical``). Importing this
package registers every module in it; call :func:`denoise_micrograph` or :func:`denoise_files`."""

from cryolib.denoise.registry import denoise_micrograph, denoiser_names, get_denoiser, load_denoisers, register_denoiser

load_denoisers()

from cryolib.denoise.files import denoise_files  # noqa: E402  (after the methods are registered)

__all__ = ["denoise_micrograph", "denoise_files", "denoiser_names", "get_denoiser", "register_denoiser"]
