"""Public entry point of the read side (kept stable for researchers' scripts): see :mod:`engine.read.reader`."""
from .read.item import ItemView, Modality, Window  # noqa: F401
from .read.reader import StoreReader, StreamStep, open_store  # noqa: F401
from .store.zarrjson import load_array  # noqa: F401
