"""The feature store: Zarr v3, items packed into shards published whole.

- :mod:`engine.store.layout`: every node and attribute name (the contract).
- :mod:`engine.store.zarrjson`: the one ``zarr.json`` parser and memory-mapped array loader (reader and inspect).
- :mod:`engine.store.writer`: :class:`FeatureStore` (published shards, locks, recovery, checks).
- :mod:`engine.store.shard`: :class:`ShardWriter`, one version of a shard built in staging and published whole.

Another format (or a remote filesystem) is one module beside these offering the same two things: a writer with
``stage(key) -> write(items, ...) / publish() / abort()`` and the index read by :mod:`engine.read.reader`.
"""
from .layout import PRIVATE, STORE_FORMAT  # noqa: F401
from .shard import ItemRows, ShardWriter  # noqa: F401
from .writer import FeatureStore  # noqa: F401
from .zarrjson import load_array, read_attrs  # noqa: F401
