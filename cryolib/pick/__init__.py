"""Particle pickers: Cryo-EMMAE clustering (``cluster``, on the token grid of ``embedding``,
with its mask-to-picks step in ``postprocess``), a LoG/DoG blob picker (``blob``) and Topaz
as a peer (``topaz``). Each returns a DataFrame of ``x, y`` (px, input micrograph pixels,
top-left origin), ``diameter`` and ``score``."""
