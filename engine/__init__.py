"""EmoS feature engine: find items, decode on a time grid, extract in Ray actors, store in Zarr, read fast."""
__version__ = "0.2.0"
