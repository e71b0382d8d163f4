"""Pure, batched tensor functions shared by decoders and extractors. No I/O, no state.

``kernels.align`` is NumPy only (the reader and the engine use it without importing torch); ``kernels.image`` and
``kernels.audio`` take and return torch tensors on whatever device they live.
"""
