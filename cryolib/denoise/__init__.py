"""Micrograph denoisers (Topaz-Denoise's shipped models; DRACO's zero-shot denoiser)."""
