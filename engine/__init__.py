"""EmoS feature engine: find items, decode on a time grid, extract in Ray actors, store in Zarr, read fast."""
__version__ = "0.1.0"
STORE_FORMAT = 1  # bumped only for changes a reader must know about
