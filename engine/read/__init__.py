"""The read side: :mod:`engine.read.reader` (``open_store``, windows, causal streaming) and
:mod:`engine.read.torchdata` (the PyTorch Dataset)."""
