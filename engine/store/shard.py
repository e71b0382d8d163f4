"""One version of a shard, built in staging and published whole: :class:`ShardWriter` and the rows it takes."""
from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..fingerprint import digest, file_blake2b
from . import layout as L
from .zarrjson import consolidate, write_array, write_group


def _fsync_tree(path: Path) -> None:
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class ItemRows:
    """One item as the store receives it: rows and times per group, segments, labels and attributes."""

    id: str
    attrs: dict
    groups: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # name -> (features, t)
    segments: dict[str, np.ndarray] = field(default_factory=dict)  # start, end, text
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    label_attrs: dict = field(default_factory=dict)


class ShardWriter:
    """Builds one version of a shard in staging; :meth:`publish` makes it visible, whole, in one rename."""

    def __init__(self, store, key: str):  # store: engine.store.writer.FeatureStore
        self.store, self.key = store, key
        store.staging.mkdir(parents=True, exist_ok=True)
        self.path = store.staging / f"{digest(key, size=10)}.{uuid.uuid4().hex[:12]}"

    def _array(self, parent: Path, name: str, data: np.ndarray, dims: tuple[str, ...], attrs: dict | None = None):
        """One array, in a single chunk; numbers uncompressed, so a reader can memory-map the chunk file."""
        write_array(parent / name, data, dims, attrs)

    def write(self, items: list[ItemRows], group_attrs: dict[str, dict], dims: dict[str, int], pooled: bool,
              dtype: str) -> None:
        """Pack ``items`` (in this order) into the shard. ``group_attrs``/``dims`` describe each modality group."""
        root = self.path
        write_group(root, {L.COMPLETE: False})
        ids = [it.id for it in items]
        g = root / L.ITEMS
        write_group(g)
        self._array(g, "id", np.array(ids, dtype=object), ("item",))
        self._array(g, "duration_s", np.array([float(it.attrs.get("duration_s") or 0.0) for it in items]),
                    ("item",), {"units": "s"})
        for name, attrs in group_attrs.items():
            d = dims[name]
            feats = [np.asarray(it.groups[name][0], dtype) if name in it.groups else np.zeros((0, d), dtype)
                     for it in items]
            times = [np.asarray(it.groups[name][1], np.float64) if name in it.groups else np.zeros(0)
                     for it in items]
            gg = root / name
            write_group(gg, {**attrs, "n_rows": int(sum(len(t) for t in times))})
            self._array(gg, L.FEATURES, np.concatenate(feats) if feats else np.zeros((0, d), dtype),
                        ("time", "feature"))
            self._array(gg, L.TIMES, np.concatenate(times) if times else np.zeros(0), ("time",), {"units": "s"})
            self._array(gg, L.OFFSETS, _offsets(times), ("item_edge",))
            if pooled:
                means = [_nanmean(f) if len(f) else np.full(d, np.nan, np.float32) for f in feats]
                self._array(gg, L.POOLED, np.stack(means).astype(dtype) if means else np.zeros((0, d), dtype),
                            ("item", "feature"), {"about": "mean of the item's rows, NaN values left out (a face "
                                                  "absent from some frames); NaN where no row has a value"})
        self._segments(root, items)
        self._labels(root, items)
        self.attrs = {L.SHARD_KEY: self.key, L.ITEM_IDS: ids, L.ITEM_ATTRS: {it.id: it.attrs for it in items},
                      L.GROUPS: list(group_attrs)}

    def _segments(self, root, items: list[ItemRows]) -> None:
        g = root / L.SEGMENTS
        write_group(g)
        per = [it.segments for it in items]
        self._array(g, "start", _cat([s.get("start", np.zeros(0)) for s in per], np.float64), ("segment",),
                    {"units": "s"})
        self._array(g, "end", _cat([s.get("end", np.zeros(0)) for s in per], np.float64), ("segment",),
                    {"units": "s"})
        self._array(g, "text", np.array([t for s in per for t in s.get("text", [])], dtype=object), ("segment",))
        if any("text_raw" in s for s in per):  # text as the metadata gave it, where cleaning changed it
            raw = [t for s in per for t in s.get("text_raw", s.get("text", []))]
            self._array(g, "text_raw", np.array(raw, dtype=object), ("segment",))
        self._array(g, L.OFFSETS, _offsets([s.get("start", np.zeros(0)) for s in per]), ("item_edge",))

    def _labels(self, root, items: list[ItemRows]) -> None:
        names = sorted({n for it in items for n in it.labels if n != L.TURNING_POINTS})
        g = root / L.LABELS
        write_group(g)
        for name in names:
            parts, attrs = [], {}
            example = next(np.asarray(o.labels[name]) for o in items if name in o.labels)
            for it in items:
                if name in it.labels:
                    parts.append(np.asarray(it.labels[name]))
                    attrs = attrs or dict(it.label_attrs.get(name) or {})
                else:  # a label this item's dataset did not give: unknown for each of its segments
                    parts.append(_unknown_like(example, len(it.segments.get("start", ()))))
            data = _cat(parts, None)
            self._array(g, name, data, L.label_dims(name, data.ndim), attrs)
        self._array(g, L.OFFSETS, _offsets([it.segments.get("start", np.zeros(0)) for it in items]), ("item_edge",))
        tp = root / L.TURNING_POINTS
        write_group(tp)
        pts = [np.asarray(it.labels.get(L.TURNING_POINTS, np.zeros(0)), np.int32) for it in items]
        self._array(tp, "segment", _cat(pts, np.int32), ("turning_point",),
                    {"about": "segment indices (within the item) where the primary emotion changes"})
        self._array(tp, L.OFFSETS, _offsets(pts), ("item_edge",))

    def publish(self) -> Path:
        """Record chunk digests, set ``complete`` last, fsync, rename into the store, retire older versions."""
        digests = {}
        for dirpath, _dirs, files in os.walk(self.path):
            for f in files:
                if f != "zarr.json":
                    full = os.path.join(dirpath, f)
                    digests[os.path.relpath(full, self.path)] = file_blake2b(full)
        version = time.time_ns()
        write_group(self.path, {**self.attrs, L.VERSION: version, L.DIGESTS: digests, L.COMPLETE: True},
                    consolidated=consolidate(self.path))
        _fsync_tree(self.path)
        final = self.store.path / L.shard_dir_name(self.key, version)
        os.rename(self.path, final)
        _fsync_dir(self.store.path)
        self.store.recover(self.key)  # the older version goes (we hold the lock)
        return final

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _nanmean(rows: np.ndarray) -> np.ndarray:
    """Column means that leave NaN out (NaN where a column has no value), without numpy's empty-slice warning."""
    x = rows.astype(np.float32)
    ok = ~np.isnan(x)
    n = ok.sum(axis=0)
    total = np.where(ok, x, 0.0).sum(axis=0)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan).astype(np.float32)


def _offsets(parts: list) -> np.ndarray:
    return np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)


def _cat(parts: list, dtype) -> np.ndarray:
    parts = [np.asarray(p) if dtype is None else np.asarray(p, dtype) for p in parts]
    if not parts:
        return np.zeros(0, dtype or np.float64)
    if any(p.dtype == object or p.dtype.kind == "U" for p in parts):
        return np.concatenate([p.astype(object) for p in parts])
    return np.concatenate(parts)


def _unknown_like(example: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows of "unknown" shaped like ``example``'s rows: -1 for integers, NaN for floats, "" for text."""
    shape = (n, *example.shape[1:])
    if example.dtype == object or example.dtype.kind == "U":
        return np.full(shape, "", dtype=object)
    if example.dtype.kind in "iu":
        return np.full(shape, -1, example.dtype)
    return np.full(shape, np.nan, example.dtype)
