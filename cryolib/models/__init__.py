"""Models: the shared ViT encoder/decoder (``vit``) and the pretraining objectives (``objectives``)."""
