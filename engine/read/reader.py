"""Reading the feature store at memory-mapped speed.

The store packs items into shards (see :mod:`engine.store.layout`); every numeric array is one uncompressed chunk,
so this reader memory-maps chunk files directly, keeps times and row offsets in RAM, and turns seconds into rows
with one ``searchsorted``. A shard is opened whole the first time one of its items is read (all its arrays at
once), so a reader always sees one complete version of an item, never a mix, even while a run republishes it.

>>> store = open_store("emos_features/stream.zarr")             # doctest: +SKIP
>>> store.items()                                               # doctest: +SKIP
['A Few Good Men', ...]
>>> w = store.window("A Few Good Men", 10.0, 18.0)             # doctest: +SKIP
>>> w["visual"].features.shape, w["visual"].t[:2]               # doctest: +SKIP
((32, 1280), array([10.  , 10.25]))
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from ..errors import StoreError
from ..store import layout as L
from ..store.writer import FeatureStore
from ..store.zarrjson import read_attrs, read_meta
from .item import ItemView, Shard, Window


class StreamStep(NamedTuple):
    t: float                    # "now", in seconds
    features: dict[str, Window]  # rows strictly before now
    segment: int                # the latest segment that has started (-1 before the first)


def _finite(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, not {value!r}") from None
    if math.isnan(v):
        raise ValueError(f"{name} is NaN: a window needs real bounds in seconds")
    return v


class StoreReader:
    """Read side of one ``<split>.zarr``. Only shards marked ``complete`` are visible.

    Picklable for DataLoader workers: each worker reopens lazily.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        root = read_attrs(self.path)
        if root is None:
            raise FileNotFoundError(f"{self.path} is not a feature store (no zarr.json)")
        fmt = root.get("emos_store_format")
        if fmt != L.STORE_FORMAT:
            raise StoreError(f"{self.path}: store format {fmt}, this reader reads format {L.STORE_FORMAT}; "
                             "re-run the extraction into a new --out folder")
        self.split = root.get("split", "")
        self._scan()

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])

    def _scan(self) -> None:
        self._where: dict[str, Shard] = {}
        self.shards: list[Shard] = []
        for key, path in sorted(FeatureStore(self.path.parent, self.path.name[:-5]).shards().items()):
            meta = read_meta(path)  # damaged metadata raises StoreError naming the file
            if not meta or meta.get("attributes", {}).get(L.COMPLETE) is not True:
                continue
            shard = Shard(path, meta, self._reopen)
            self.shards.append(shard)
            for iid in shard.ids:
                self._where[iid] = shard
        self._ids = sorted(self._where)

    def _reopen(self, shard: Shard) -> Shard:
        """A shard's version was retired while we opened it: find the newest one of its key."""
        self._scan()
        for s in self.shards:
            if s.key == shard.key:
                return s
        raise StoreError(f"{shard.path}: the shard disappeared while it was read")

    def items(self) -> list[str]:
        """Ids of the complete items, sorted."""
        return list(self._ids)

    def item(self, item_id: str) -> ItemView:
        try:
            shard = self._where[item_id]
        except (KeyError, TypeError):
            raise KeyError(f"{item_id!r}: no complete item of that name in {self.path}") from None
        return ItemView(shard, item_id)

    def window(self, item_id: str, t0: float, t1: float, groups=None) -> dict[str, Window]:
        """Rows of each modality of ``item_id`` whose time lies in ``[t0, t1)`` seconds."""
        return self.item(item_id).window(t0, t1, groups)

    def stream(self, item_id: str, hop_s: float = 1.0, lookback_s: float | None = None,
               groups=None) -> Iterator[StreamStep]:
        """Causal steps through a film: at each ``t = k * hop_s`` the rows with ``t - lookback_s <= t_row < t``.

        Nothing at or after ``t`` is ever seen, as in streaming evaluation. ``lookback_s`` None: since the start.
        """
        hop_s = _finite("hop_s", hop_s)
        if hop_s <= 0:
            raise ValueError(f"hop_s must be > 0 seconds, not {hop_s}")
        if lookback_s is not None and not _finite("lookback_s", lookback_s) > 0:
            raise ValueError(f"lookback_s must be > 0 seconds (or None), not {lookback_s}")
        item = self.item(item_id)
        seg_start = item.segments.get("start", np.zeros(0))
        n = max(1, math.ceil(item.duration_s / hop_s - 1e-9))
        for k in range(1, n + 1):
            t = min(k * hop_s, item.duration_s) if k == n else k * hop_s
            t0 = 0.0 if lookback_s is None else max(0.0, t - lookback_s)
            started = int(np.searchsorted(seg_start, t, side="left"))
            yield StreamStep(t, item.window(t0, t, groups), started - 1)


def open_store(path: str | Path) -> StoreReader:
    """Open ``<out>/<split>.zarr`` for reading."""
    return StoreReader(path)


__all__ = ["StoreReader", "ItemView", "Window", "StreamStep", "open_store"]
