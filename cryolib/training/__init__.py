"""The one training loop (``loop``), its dataset contract (``data``: ``TrainingDataset``, ``batch_size_of``),
checkpoints, distributed helpers, and a synthetic smoke run of any objective (``synthetic``)."""
