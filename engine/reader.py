"""Reading the feature store at memory-mapped speed.

zarr-python costs ~1 ms per ``__getitem__``, 20-40x slower than a memory map for the small windows a trainer
reads. The store is written so that it need not be in the loop: every numeric array is uncompressed
little-endian bytes in a single chunk, so its chunk file *is* the array. This reader parses each ``zarr.json``
once, memory-maps the chunk files, keeps the timestamps in RAM, and turns seconds into rows with one
``searchsorted`` per modality. Arrays written otherwise (compressed, several chunks) are still read, through zarr.

>>> store = open_store("emos_features/stream.zarr")             # doctest: +SKIP
>>> store.items()                                               # doctest: +SKIP
['A Few Good Men', ...]
>>> w = store.window("A Few Good Men", 10.0, 18.0)             # doctest: +SKIP
>>> w["visual"].features.shape, w["visual"].t[:2]               # doctest: +SKIP
((32, 1280), array([10.  , 10.25]))
"""
from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from kernels.align import overlap, window_rows

from .store import read_attrs

_RESERVED = ("segments", "labels")


class Window(NamedTuple):
    features: np.ndarray  # [n, D] (a read-only view into the memory map)
    t: np.ndarray         # [n] float64 seconds


def _chunk_file(arr_path: Path, meta: dict) -> Path:
    enc = meta.get("chunk_key_encoding", {})
    sep = enc.get("configuration", {}).get("separator", "/")
    zeros = ["0"] * len(meta["shape"])
    if enc.get("name", "default") == "default":
        return arr_path / sep.join(["c", *zeros]) if zeros else arr_path / "c"
    return arr_path / sep.join(zeros or ["0"])


def load_array(arr_path: Path) -> np.ndarray:
    """An array of the store: memory-mapped when its layout allows, else read through zarr."""
    with open(arr_path / "zarr.json", encoding="utf-8") as fh:
        meta = json.load(fh)
    shape = tuple(meta["shape"])
    codecs = meta.get("codecs", [])
    chunk = tuple(meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape", ()))
    plain = (len(codecs) == 1 and codecs[0].get("name") == "bytes"
             and codecs[0].get("configuration", {}).get("endian", "little") == "little")
    single = all(c >= max(1, s) for c, s in zip(chunk, shape)) and len(chunk) == len(shape)
    try:
        dtype = np.dtype(meta["data_type"])
    except TypeError:
        dtype = None
    if plain and single and dtype is not None:
        if math.prod(shape) == 0:
            return np.zeros(shape, dtype)
        f = _chunk_file(arr_path, meta)
        if not f.exists():  # a chunk that was never written holds the fill value
            return np.full(shape, meta.get("fill_value", 0), dtype)
        if tuple(chunk) == shape:
            return np.memmap(str(f), dtype=dtype, mode="r", shape=shape)
        full = np.memmap(str(f), dtype=dtype, mode="r", shape=chunk)
        return full[tuple(slice(0, s) for s in shape)]
    import zarr
    return zarr.open_array(str(arr_path), mode="r")[...]


@dataclass
class Modality:
    name: str
    t: np.ndarray          # in RAM: re-reading timestamps per window halves throughput
    features: np.ndarray   # memory map
    attrs: dict


class ItemView:
    """One complete item: its modalities (memory-mapped), segments and labels (loaded on first use)."""

    def __init__(self, path: Path, attrs: dict):
        self.path, self.attrs, self.id = path, attrs, path.name
        self.duration_s: float = float(attrs.get("duration_s") or 0.0)
        self.lang: str = attrs.get("lang", "")
        self.groups: dict[str, Modality] = {}
        for name in attrs.get("groups", []):
            g = path / name
            gattrs = read_attrs(g)
            if gattrs is None:
                continue
            t = np.array(load_array(g / "t"), dtype=np.float64)
            self.groups[name] = Modality(name, t, load_array(g / "features"), gattrs)
        self._segments = None
        self._labels = None

    def window(self, t0: float, t1: float, groups=None) -> dict[str, Window]:
        """Rows of each modality whose time lies in ``[t0, t1)`` seconds."""
        out = {}
        for name in groups or self.groups:
            m = self.groups[name]
            i0, i1 = window_rows(m.t, t0, t1)
            out[name] = Window(m.features[i0:i1], m.t[i0:i1])
        return out

    @property
    def segments(self) -> dict[str, np.ndarray]:
        """``{"start", "end", "text"}`` arrays, one entry per sentence segment."""
        if self._segments is None:
            self._segments = self._load_group("segments")
        return self._segments

    @property
    def labels(self) -> dict[str, np.ndarray]:
        """Label arrays by name (``primary``, ``goemotions``, ``intensity``, ...)."""
        if self._labels is None:
            self._labels = self._load_group("labels")
        return self._labels

    def _load_group(self, name: str) -> dict[str, np.ndarray]:
        g = self.path / name
        if not g.is_dir():
            return {}
        out = {}
        for child in sorted(p for p in g.iterdir() if (p / "zarr.json").is_file()):
            out[child.name] = np.array(load_array(child))  # small: loaded into RAM
        return out

    def segment_at(self, t0: float, t1: float) -> int:
        """Index of the segment that overlaps ``[t0, t1)`` most (-1 if none)."""
        seg = self.segments
        if not len(seg.get("start", ())):
            return -1
        ov = [overlap(t0, t1, float(a), float(b)) for a, b in zip(seg["start"], seg["end"])]
        k = int(np.argmax(ov))
        return k if ov[k] > 0 else -1


class StoreReader:
    """Read side of one ``<split>.zarr``. Only items marked ``complete`` are visible.

    Item views are cached (least recently used first out), so a trainer's random access does not reopen files;
    each holds one open memory map per modality, so ``cache_items`` also bounds the open file descriptors.
    Picklable for DataLoader workers: each worker reopens lazily.
    """

    def __init__(self, path: str | Path, cache_items: int = 64):
        self.path = Path(path)
        if read_attrs(self.path) is None:
            raise FileNotFoundError(f"{self.path} is not a feature store (no zarr.json)")
        self.cache_items = cache_items
        self._cache: OrderedDict[str, ItemView] = OrderedDict()
        self._items: list[str] | None = None

    def __getstate__(self):
        return {"path": self.path, "cache_items": self.cache_items}

    def __setstate__(self, state):
        self.__init__(state["path"], state["cache_items"])

    def items(self) -> list[str]:
        """Ids of the complete items, sorted."""
        if self._items is None:
            self._items = sorted(p.name for p in self.path.iterdir()
                                 if p.is_dir() and (read_attrs(p) or {}).get("complete") is True)
        return list(self._items)

    def item(self, item_id: str) -> ItemView:
        v = self._cache.get(item_id)
        if v is not None:
            self._cache.move_to_end(item_id)
            return v
        p = self.path / item_id
        safe = item_id not in ("", ".", "..") and "/" not in item_id and "\\" not in item_id
        attrs = read_attrs(p) if safe else None
        if not attrs or attrs.get("complete") is not True:
            raise KeyError(f"{item_id!r}: no complete item of that name in {self.path}")
        v = ItemView(p, attrs)
        self._cache[item_id] = v
        if len(self._cache) > self.cache_items:
            self._cache.popitem(last=False)
        return v

    def window(self, item_id: str, t0: float, t1: float, groups=None) -> dict[str, Window]:
        """Rows of each modality of ``item_id`` whose time lies in ``[t0, t1)`` seconds."""
        return self.item(item_id).window(t0, t1, groups)

    def stream(self, item_id: str, hop_s: float = 1.0, lookback_s: float | None = None,
               groups=None) -> Iterator["StreamStep"]:
        """Causal steps through a film: at each ``t = k * hop_s`` the rows with ``t - lookback_s <= t_row < t``.

        Nothing at or after ``t`` is ever seen, as in streaming evaluation. ``lookback_s`` None: since the start.
        """
        item = self.item(item_id)
        n = max(1, math.ceil(item.duration_s / hop_s - 1e-9))
        for k in range(1, n + 1):
            t = min(k * hop_s, item.duration_s) if k == n else k * hop_s
            t0 = 0.0 if lookback_s is None else max(0.0, t - lookback_s)
            seg = item.segments
            active = -1
            if len(seg.get("start", ())):
                started = np.nonzero(seg["start"] < t)[0]
                active = int(started[-1]) if len(started) else -1
            yield StreamStep(t, item.window(t0, t, groups), active)


class StreamStep(NamedTuple):
    t: float                    # "now", in seconds
    features: dict[str, Window]  # rows strictly before now
    segment: int                # the latest segment that has started (-1 before the first)


def open_store(path: str | Path) -> StoreReader:
    """Open ``<out>/<split>.zarr`` for reading."""
    return StoreReader(path)
