"""The one training loop, its checkpoints and distributed helpers."""
