"""Public entry point of the PyTorch views (kept stable): see :mod:`engine.read.torchdata`."""
from .read.torchdata import WindowDataset  # noqa: F401
