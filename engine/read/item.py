"""One shard opened for reading, and the view of one item in it."""
from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from kernels.align import overlap, window_rows

from ..errors import StoreError
from ..store import layout as L
from ..store.zarrjson import load_array, read_attrs

log = logging.getLogger(__name__)


class Window(NamedTuple):
    features: np.ndarray  # [n, D] (a read-only view into the memory map)
    t: np.ndarray         # [n] float64 seconds


@dataclass
class Packed:
    """A modality of a shard: all items' rows, their times (in RAM) and each item's row range."""

    name: str
    features: np.ndarray   # memory map [N, D]
    t: np.ndarray          # [N] float64, in RAM: re-reading timestamps per window halves throughput
    offsets: np.ndarray    # [I + 1] int64
    attrs: dict
    pooled: np.ndarray | None = None

    def __post_init__(self):
        # the same bytes as a plain ndarray: slicing an np.memmap costs ~10 us of bookkeeping a Dataset can skip
        self.rows = self.features.view(np.ndarray) if isinstance(self.features, np.memmap) else self.features
        self.bounds = self.offsets.tolist()  # Python ints: an item's row range without numpy scalars
        if isinstance(self.pooled, np.memmap):
            self.pooled = self.pooled.view(np.ndarray)


class Modality:
    """One modality of one item: its rows (a view of the shard's memory map) and their times, sliced on use."""

    __slots__ = ("name", "_p", "_a", "_b")

    def __init__(self, packed: "Packed", a: int, b: int):
        self.name, self._p, self._a, self._b = packed.name, packed, a, b

    @property
    def features(self) -> np.ndarray:
        """The item's rows ``[n, D]``: a read-only view of the shard's memory map (copy it to keep or change it)."""
        return self._p.rows[self._a:self._b]

    @property
    def t(self) -> np.ndarray:
        return self._p.t[self._a:self._b]

    @property
    def attrs(self) -> dict:
        return self._p.attrs


class _Nodes:
    """The nodes of one shard version: from its consolidated metadata (one file read for the whole shard) or, for a
    shard written without it, from each node's ``zarr.json``."""

    def __init__(self, path: Path, consolidated: dict | None):
        self.path, self.meta = path, consolidated

    def exists(self, rel: str) -> bool:
        return rel in self.meta if self.meta is not None else (self.path / rel / "zarr.json").is_file()

    def attrs(self, rel: str) -> dict | None:
        if self.meta is None:
            return read_attrs(self.path / rel)
        node = self.meta.get(rel)
        return None if node is None else node.get("attributes", {})

    def array(self, rel: str, dtype=None, mmap: bool = True) -> np.ndarray:
        """An array: memory-mapped, or read into RAM as ``dtype`` (small arrays: a map would cost more)."""
        meta = self.meta.get(rel) if self.meta is not None else None  # absent: read from disk (or missing)
        try:
            if dtype is None:
                return load_array(self.path / rel, mmap=mmap, meta=meta)
            return np.asarray(load_array(self.path / rel, mmap=False, meta=meta), dtype)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # metadata that is not an array's
            raise StoreError(f"{self.path / 'zarr.json'}: damaged metadata of {rel} ({type(exc).__name__}: {exc}); "
                             "re-run the extraction to rewrite it") from None

    def children(self, rel: str) -> list[str]:
        """Names of the arrays directly inside group ``rel``."""
        if self.meta is None:
            return sorted(p.name for p in (self.path / rel).iterdir() if (p / "zarr.json").is_file())
        head = rel + "/"
        return sorted(k[len(head):] for k, m in self.meta.items()
                      if k.startswith(head) and "/" not in k[len(head):] and m.get("node_type") == "array")


def consolidated_of(meta: dict, path: Path) -> dict | None:
    """The inline consolidated metadata of a shard's ``zarr.json``; None when it has none, or when it leaves out an
    array whose chunk the shard's digests list (a damaged copy that still parses: a label array would vanish from
    the item without a word): then each node's own file is read, and the next run rewrites the shard (its check
    compares the copy with every node's file, see ``check_shard``)."""
    c = meta.get("consolidated_metadata")
    nodes = c.get("metadata") if isinstance(c, dict) and isinstance(c.get("metadata"), dict) else None
    digests = meta.get("attributes", {}).get(L.DIGESTS)
    if nodes is not None and isinstance(digests, dict) and not _covers(nodes, digests):
        log.warning("%s: its copy of the nodes' metadata leaves out arrays of the shard; reading each node's own "
                    "zarr.json instead (re-run the extraction to rewrite the shard)", path / "zarr.json")
        return None
    return nodes


def _covers(nodes: dict, chunk_files) -> bool:
    """Whether every chunk file lies in an array node of ``nodes`` (a few dict lookups a file)."""
    for rel in chunk_files:
        parts = rel.split("/")
        for k in range(len(parts) - 1, 0, -1):
            node = nodes.get("/".join(parts[:k]))
            if node is not None:
                if not isinstance(node, dict) or node.get("node_type") != "array":
                    return False
                break
        else:
            return False
    return True


class Shard:
    """A published shard. Its arrays are loaded together on first use, so one version is seen whole."""

    def __init__(self, path: Path, meta: dict, reopen: Callable[["Shard"], "Shard"]):
        attrs = meta.get("attributes", {})
        self.path, self.attrs, self.nodes = path, attrs, consolidated_of(meta, path)
        self.key = attrs.get(L.SHARD_KEY, path.name.rpartition(".")[0])
        self.ids: list[str] = list(attrs.get(L.ITEM_IDS, []))
        self.item_attrs: dict = attrs.get(L.ITEM_ATTRS, {})
        self.pos = {iid: k for k, iid in enumerate(self.ids)}
        self._reopen = reopen
        self._lock = threading.Lock()
        self._loaded = False

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            for attempt in range(5):
                try:
                    self._load_arrays(_Nodes(self.path, self.nodes))
                    break
                except (FileNotFoundError, StoreError):
                    if self.path.is_dir() or attempt == 4:
                        raise  # the version is still there: it is damaged
                    # the version was retired (a newer one published) while we read it: read the newest one whole
                    newer = self._reopen(self)
                    self.path, self.attrs, self.nodes = newer.path, newer.attrs, newer.nodes
                    self.ids, self.item_attrs, self.pos = newer.ids, newer.item_attrs, newer.pos
            self._loaded = True

    def _load_arrays(self, nodes: _Nodes) -> None:
        if not nodes.path.is_dir():
            raise FileNotFoundError(nodes.path)
        groups = {}
        for name in self.attrs.get(L.GROUPS, []):
            gattrs = nodes.attrs(name)
            if gattrs is None:
                raise StoreError(f"{nodes.path / name}: modality group is missing; the store is damaged, re-run the "
                                 "extraction")
            offsets = nodes.array(f"{name}/{L.OFFSETS}", np.int64)
            feats = nodes.array(f"{name}/{L.FEATURES}")
            t = nodes.array(f"{name}/{L.TIMES}", np.float64)
            if len(offsets) != len(self.ids) + 1 or offsets[-1] != len(t) or len(feats) != len(t):
                raise StoreError(f"{nodes.path / name}: row offsets, times and features disagree; the store is "
                                 "damaged")
            pooled = nodes.array(f"{name}/{L.POOLED}") if nodes.exists(f"{name}/{L.POOLED}") else None
            groups[name] = Packed(name, feats, t, offsets, gattrs, pooled)
        seg = L.SEGMENTS
        self.seg_offsets = nodes.array(f"{seg}/{L.OFFSETS}", np.int64)
        self.seg_start = nodes.array(f"{seg}/start", np.float64)
        self.seg_end = nodes.array(f"{seg}/end", np.float64)
        # everything but the features (memory maps, which outlive a retired version) is read now, in RAM
        self._seg_text = np.array(nodes.array(f"{seg}/text"), dtype=object)
        self._seg_text_raw = (np.array(nodes.array(f"{seg}/text_raw"), dtype=object)
                              if nodes.exists(f"{seg}/text_raw") else None)
        self.label_names = [n for n in nodes.children(L.LABELS) if n != L.OFFSETS]
        self.label_attrs = {n: nodes.attrs(f"{L.LABELS}/{n}") or {} for n in self.label_names}
        self._labels: dict[str, np.ndarray] = {}
        for name in self.label_names:  # all now: the version read is the version seen
            self._labels[name] = np.array(nodes.array(f"{L.LABELS}/{name}", mmap=False))
        tp = L.TURNING_POINTS
        self.tp_offsets = nodes.array(f"{tp}/{L.OFFSETS}", np.int64)
        self.tp = nodes.array(f"{tp}/segment", np.int32)
        self.groups = groups

    @property
    def packed(self) -> dict[str, Packed]:
        if not self._loaded:
            self._load()
        return self.groups

    @property
    def labels_loaded(self) -> dict[str, np.ndarray]:
        """Every label array of the shard, by name (in RAM)."""
        if not self._loaded:
            self._load()
        return self._labels

    def label(self, name: str) -> np.ndarray:
        """A label array over all segments of the shard, in RAM."""
        if name not in self._labels:
            self._labels[name] = np.array(load_array(self.path / L.LABELS / name, mmap=False))
        return self._labels[name]

    def seg_text(self) -> np.ndarray:
        return self._seg_text


class ItemView:
    """One complete item: its modalities (memory-mapped slices), segments and labels."""

    __slots__ = ("shard", "k", "id", "attrs", "_groups")

    def __init__(self, shard: Shard, item_id: str):
        shard.packed  # noqa: B018  (the version is fixed here: attributes and rows come from the same one)
        if item_id not in shard.pos:
            raise KeyError(f"{item_id!r}: no longer in {shard.path.parent}")
        self.shard, self.k, self.id = shard, shard.pos[item_id], item_id
        self.attrs = shard.item_attrs.get(item_id, {})
        self._groups = None

    @property
    def duration_s(self) -> float:
        return float(self.attrs.get("duration_s") or 0.0)

    @property
    def lang(self) -> str:
        return self.attrs.get("lang", "")

    @property
    def groups(self) -> dict[str, Modality]:
        """The modalities this item has (a group it lacks, e.g. audio of a silent film, is absent)."""
        if self._groups is None:
            out, k = {}, self.k
            present = self.attrs.get("groups")
            for name, p in self.shard.packed.items():
                if present is None or name in present:
                    out[name] = Modality(p, p.bounds[k], p.bounds[k + 1])
            self._groups = out
        return self._groups

    def pooled(self, name: str) -> np.ndarray | None:
        """The item's mean vector of one modality (clip datasets), or None."""
        p = self.shard.packed[name].pooled
        return None if p is None else p[self.k]

    def window(self, t0: float, t1: float, groups=None) -> dict[str, Window]:
        """Rows of each modality whose time lies in ``[t0, t1)`` seconds."""
        if isinstance(t0, float) and math.isnan(t0) or isinstance(t1, float) and math.isnan(t1):
            raise ValueError(f"window bounds must be real seconds, not ({t0}, {t1}) (NaN)")
        out = {}
        gs = self.groups
        for name in groups or gs:
            m = gs[name]
            i0, i1 = window_rows(m.t, t0, t1)
            out[name] = Window(m.features[i0:i1], m.t[i0:i1])
        return out

    def _seg_range(self) -> tuple[int, int]:
        s = self.shard
        s.packed  # noqa: B018  (loads the shard)
        return int(s.seg_offsets[self.k]), int(s.seg_offsets[self.k + 1])

    @property
    def segments(self) -> dict[str, np.ndarray]:
        """``{"start", "end", "text"}`` arrays, one entry per sentence segment, in time order."""
        a, b = self._seg_range()
        s = self.shard
        out = {"start": s.seg_start[a:b], "end": s.seg_end[a:b], "text": s.seg_text()[a:b]}
        if s._seg_text_raw is not None:
            out["text_raw"] = s._seg_text_raw[a:b]
        return out

    @property
    def labels(self) -> dict[str, np.ndarray]:
        """Label arrays by name (``primary``, ``goemotions``, ``intensity``, ``turning_points``, ...)."""
        a, b = self._seg_range()
        s = self.shard
        out = {name: s.label(name)[a:b] for name in s.label_names}
        out[L.TURNING_POINTS] = s.tp[s.tp_offsets[self.k]:s.tp_offsets[self.k + 1]]
        return out

    def segment_at(self, t0: float, t1: float) -> int:
        """Index of the segment that overlaps ``[t0, t1)`` most (-1 if none)."""
        seg = self.segments
        if not len(seg["start"]):
            return -1
        ov = [overlap(t0, t1, float(a), float(b)) for a, b in zip(seg["start"], seg["end"])]
        k = int(np.argmax(ov))
        return k if ov[k] > 0 else -1
