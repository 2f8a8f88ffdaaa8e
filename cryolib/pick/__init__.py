"""Particle pickers, registered by name (:mod:`cryolib.pick.registry`): Cryo-EMMAE (``cryoemmae``:
the pipeline in ``cryoemmae``, the picker object in ``cryoemmae_picker``, its clustering in
``cluster`` on the token grid of ``embedding``, its mask-to-picks step in ``postprocess``), a
LoG/DoG blob picker (``blob``) and Topaz's pretrained picker as a peer (``topaz``). Each returns
a DataFrame of ``x, y`` (px, input micrograph pixels, top-left origin), ``diameter`` and ``score``.
Importing this package registers every picker module in it; call :func:`pick_micrographs`."""

from cryolib.pick.registry import get_picker, load_pickers, pick_micrographs, picker_names

__all__ = ["get_picker", "pick_micrographs", "picker_names"]

load_pickers()
