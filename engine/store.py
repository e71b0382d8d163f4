"""The feature store: ``<out>/<split>.zarr``, a Zarr v3 group with one child group per item, published whole.

Layout of an item group (the contract; see the README)::

    <item>/                 attrs: source, duration_s, lang, complete, fingerprints, ...
      <group>/features      [N, D] (time, feature), uncompressed, one chunk: a raw little-endian file
      <group>/t             [N] float64 seconds from clip start
      segments/start, end   [S] float64; segments/text [S] str
      labels/...            primary [S] int8 (Basic-7 index, -1 unknown), goemotions [S, 28], intensity [S], ...

Crash safety: an item is written into ``<out>/.emos/staging/<split>/``, its ``complete`` attribute is set last,
every file is fsynced, and only then is the folder renamed into the store (a replaced item goes to ``trash`` first
and is restored if a crash falls between the two renames). A per-item lock file (``fcntl.flock``) makes two runs
on one store share the work instead of racing: the lock dies with its process, so a killed run never blocks.
Nothing under ``.emos/`` is part of the Zarr store.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from . import STORE_FORMAT

log = logging.getLogger(__name__)

PRIVATE = ".emos"  # beside the stores: staging, trash, locks


def _h(item_id: str) -> str:
    return hashlib.blake2b(item_id.encode(), digest_size=10).hexdigest()


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


def read_attrs(group_path: Path) -> dict | None:
    """A Zarr v3 node's attributes straight from its ``zarr.json`` (no zarr-python in the loop)."""
    try:
        with open(group_path / "zarr.json", encoding="utf-8") as fh:
            return json.load(fh).get("attributes", {})
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


class FeatureStore:
    """Writer side of ``<out>/<split>.zarr`` (the reader is :class:`engine.reader.StoreReader`)."""

    def __init__(self, out: str | Path, split: str):
        self.out = Path(out)
        self.split = split
        self.path = self.out / f"{split}.zarr"
        self.private = self.out / PRIVATE
        self.staging = self.private / "staging" / split
        self.trash = self.private / "trash" / split
        self.locks = self.private / "locks" / split

    def create(self) -> None:
        import zarr
        for d in (self.staging, self.trash, self.locks):
            d.mkdir(parents=True, exist_ok=True)
        if not (self.path / "zarr.json").exists():
            with self.lock("__root__"):
                if not (self.path / "zarr.json").exists():
                    zarr.open_group(str(self.path), mode="a", zarr_format=3,
                                    attributes={"emos_store_format": STORE_FORMAT, "split": self.split})

    # ---------------------------------------------------------------------------------------------- state
    def item_path(self, item_id: str) -> Path:
        p = self.path / item_id
        if p.resolve().parent != self.path.resolve():
            raise ValueError(f"item name {item_id!r} would escape the store")
        return p

    def item_attrs(self, item_id: str) -> dict | None:
        return read_attrs(self.item_path(item_id))

    @contextlib.contextmanager
    def lock(self, item_id: str):
        """Exclusive per-item lock across processes (and across runs) on this store."""
        self.locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.locks / f"{_h(item_id)}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def recover(self, item_id: str) -> None:
        """Under the item's lock: put back an item lost between the two renames of a swap, drop leftovers."""
        h = _h(item_id)
        final = self.item_path(item_id)
        leftovers = sorted(self.trash.glob(f"{h}.*"), key=lambda p: p.stat().st_mtime, reverse=True)
        if not final.exists():
            for cand in leftovers:
                if (read_attrs(cand) or {}).get("complete") is True:
                    os.rename(cand, final)
                    log.warning("%s: restored the previous copy after an interrupted publish", item_id)
                    break
        for p in list(self.trash.glob(f"{h}.*")) + list(self.staging.glob(f"{h}.*")):
            shutil.rmtree(p, ignore_errors=True)

    def stage(self, item_id: str, attrs: dict) -> "ItemWriter":
        return ItemWriter(self, item_id, attrs)


class ItemWriter:
    """Builds one item in the staging folder; :meth:`publish` makes it visible, whole, in one rename."""

    def __init__(self, store: FeatureStore, item_id: str, attrs: dict):
        import zarr
        self.store, self.item_id = store, item_id
        store.item_path(item_id)  # validates the name
        self.path = store.staging / f"{_h(item_id)}.{uuid.uuid4().hex[:12]}"
        self.group = zarr.open_group(str(self.path), mode="w", zarr_format=3,
                                     attributes={**attrs, "complete": False})

    def write_array(self, name: str, data: np.ndarray, dims: tuple[str, ...], attrs: dict | None = None) -> None:
        """One array, uncompressed and in a single chunk, so a reader can memory-map its chunk file."""
        parent = self.group
        *groups, leaf = name.split("/")
        for g in groups:
            parent = parent.require_group(g)
        data = np.asarray(data)
        if data.dtype == object or data.dtype.kind == "U":
            arr = parent.create_array(leaf, shape=data.shape, dtype=str, chunks=tuple(max(1, n) for n in data.shape),
                                      dimension_names=dims, attributes=attrs or {})
            if data.size:
                arr[...] = data.astype(object)
            return
        arr = parent.create_array(leaf, shape=data.shape, dtype=data.dtype,
                                  chunks=tuple(max(1, n) for n in data.shape), compressors=None,
                                  dimension_names=dims, attributes=attrs or {},
                                  config={"write_empty_chunks": True})
        if data.size:
            arr[...] = data

    def write_modality(self, group: str, features: np.ndarray, t: np.ndarray, attrs: dict) -> None:
        features = np.asarray(features)
        t = np.asarray(t, dtype=np.float64)
        if features.ndim != 2 or len(features) != len(t):
            raise ValueError(f"{group}: features {features.shape} and t {t.shape} do not match")
        if len(t) > 1 and np.any(np.diff(t) < 0):
            raise ValueError(f"{group}: times are not sorted")
        g = self.group.require_group(group)
        g.attrs.update({**attrs, "n_rows": int(len(t))})
        self.write_array(f"{group}/features", features, ("time", "feature"))
        self.write_array(f"{group}/t", t, ("time",), {"units": "s"})

    def reuse_group(self, group: str, src_item: Path) -> None:
        """Take a group unchanged from the published item: chunks hard-linked, metadata copied."""
        src, dst = src_item / group, self.path / group

        def link_or_copy(s, d):
            if os.path.basename(s) == "zarr.json":
                return shutil.copy2(s, d)
            try:
                os.link(s, d)
            except OSError:
                shutil.copy2(s, d)

        shutil.copytree(src, dst, copy_function=link_or_copy)

    def publish(self, attrs: dict) -> None:
        """Set ``complete`` last, fsync, and rename into the store (replacing an older copy)."""
        self.group.attrs.update({**attrs, "complete": True})
        _fsync_tree(self.path)
        final = self.store.item_path(self.item_id)
        old = None
        if final.exists():
            old = self.store.trash / self.path.name
            os.rename(final, old)
        os.rename(self.path, final)
        _fsync_dir(self.store.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
