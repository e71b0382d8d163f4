"""Writer side of ``<out>/<split>.zarr``: shards built in staging, fsynced, and renamed into the store whole.

Crash safety: a shard is written into ``<out>/.emos/staging/<split>/``, its ``complete`` attribute set last, every
file fsynced, and only then renamed into the store under a new version name; the older version is then moved to
``trash`` (one rename) and deleted. A reader therefore always finds a whole version of every shard. A per-shard
lock file (``fcntl.flock``) makes two runs on one store share the work instead of racing: the lock dies with its
process, so a killed run never blocks the next one.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import uuid
from pathlib import Path

from ..errors import StoreError
from ..fingerprint import digest
from . import layout as L
from .shard import ShardWriter
from .zarrjson import check_array, read_attrs, read_meta, write_group

log = logging.getLogger(__name__)


class FeatureStore:
    """The store of one split: published shards, their locks, and staging for new versions."""

    def __init__(self, out: str | Path, split: str):
        self.out = Path(out)
        self.split = split
        self.path = self.out / f"{split}.zarr"
        self.private = self.out / L.PRIVATE
        self.staging = self.private / "staging" / split
        self.trash = self.private / "trash" / split
        self.locks = self.private / "locks" / split

    def create(self) -> None:
        for d in (self.staging, self.trash, self.locks):
            d.mkdir(parents=True, exist_ok=True)
        if not (self.path / "zarr.json").exists():
            with self.lock("__root__"):
                if not (self.path / "zarr.json").exists():
                    write_group(self.path, {"emos_store_format": L.STORE_FORMAT, "split": self.split})
        fmt = (read_attrs(self.path) or {}).get("emos_store_format")
        if fmt != L.STORE_FORMAT:
            raise ValueError(f"{self.path} has store format {fmt}, this engine writes {L.STORE_FORMAT}: "
                             "write to a new --out folder (or delete the old store)")

    # ---------------------------------------------------------------------------------------------- state
    def shards(self) -> dict[str, Path]:
        """The newest published version of every shard, by key."""
        best: dict[str, tuple[int, Path]] = {}
        if not self.path.is_dir():
            return {}
        for p in self.path.iterdir():
            kv = L.parse_shard_dir(p.name)
            if kv and p.is_dir() and (kv[0] not in best or kv[1] > best[kv[0]][0]):
                best[kv[0]] = (kv[1], p)
        return {k: p for k, (_, p) in best.items()}

    def index(self) -> dict[str, tuple[str, dict]]:
        """``{item id: (shard key, item attrs)}`` over the published shards, with a cheap check of each shard
        (every array's metadata parses, every chunk file exists with its size): the items of a damaged shard carry
        ``damaged`` (the reason), so that the planner recomputes them."""
        out = {}
        for key, path in sorted(self.shards().items()):
            attrs = read_attrs(path) or {}
            if attrs.get(L.COMPLETE) is not True:
                continue
            damage = check_shard(path, attrs)
            for iid in attrs.get(L.ITEM_IDS, []):
                item = attrs.get(L.ITEM_ATTRS, {}).get(iid, {})
                out[iid] = (key, {**item, "damaged": damage} if damage else item)
        return out

    def retire_damaged(self) -> list[str]:
        """Take out of the store the shards whose own metadata is unreadable (their items are then new to the
        planner and recomputed); returns one line per shard taken out."""
        lines = []
        for key, path in sorted(self.shards().items()):
            try:
                read_attrs(path)
                continue
            except StoreError as exc:
                why = str(exc)
            with self.lock(key):
                self.retire(key)
            lines.append(why)
        return lines

    @contextlib.contextmanager
    def lock(self, key: str, blocking: bool = True):
        """Exclusive lock of one shard key across processes and runs. Yields False when ``blocking`` is False and
        another process holds it."""
        self.locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.locks / f"{digest(key, size=10)}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def sweep(self) -> int:
        """Remove staging and trash leftovers of killed runs whose shard no one holds now (also those of shards
        that are cached and so never locked by a worker again); returns how many went."""
        gone = 0
        for folder in (self.staging, self.trash):
            for p in list(folder.glob("*.*")) if folder.is_dir() else []:
                tag = p.name.split(".", 1)[0]
                fd = os.open(self.locks / f"{tag}.lock", os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # a live writer of that shard
                    continue
                else:
                    shutil.rmtree(p, ignore_errors=True)
                    gone += 1
                    fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)
        return gone

    def recover(self, key: str) -> None:
        """Under the shard's lock: drop staging leftovers and versions older than the newest."""
        tag = digest(key, size=10)
        for p in list(self.staging.glob(f"{tag}.*")) + list(self.trash.glob(f"{tag}.*")):
            shutil.rmtree(p, ignore_errors=True)
        versions = sorted((kv[1], p) for p in self.path.glob(f"{key}.*")
                          if (kv := L.parse_shard_dir(p.name)) and kv[0] == key)
        for _, p in versions[:-1]:
            self._retire(p, tag)

    def retire(self, key: str) -> None:
        """Under the shard's lock: take every version of a shard out of the store."""
        tag = digest(key, size=10)
        for p in self.path.glob(f"{key}.*"):
            kv = L.parse_shard_dir(p.name)
            if kv and kv[0] == key:
                self._retire(p, tag)

    def _retire(self, path: Path, tag: str) -> None:
        self.trash.mkdir(parents=True, exist_ok=True)
        dead = self.trash / f"{tag}.{uuid.uuid4().hex[:12]}"
        os.rename(path, dead)  # one rename: a reader sees the shard whole or not at all
        shutil.rmtree(dead, ignore_errors=True)

    def stage(self, key: str) -> ShardWriter:
        """A writer for a new version of shard ``key`` (hold the shard's lock while it writes)."""
        return ShardWriter(self, key)


def check_shard(path: Path, attrs: dict) -> str | None:
    """Why a published shard is damaged (cheap: metadata parses, every chunk file written at publish is there
    with the size its array needs), or None."""
    for rel in attrs.get(L.DIGESTS, {}):
        if not (path / rel).is_file():
            return f"{path / rel}: chunk file is missing"
    metas = {}
    for dirpath, dirs, files in os.walk(path):
        node = Path(dirpath)
        if "zarr.json" not in files:
            return f"{node}: zarr.json is missing"
        try:
            meta = read_meta(node)
        except StoreError as exc:
            return str(exc)
        metas[os.path.relpath(dirpath, path).replace(os.sep, "/")] = meta
        if meta.get("node_type") == "array":
            dirs[:] = []  # its chunks
            why = check_array(node)
            if why:
                return why
    root = metas.pop(".", {})
    copy = root.get("consolidated_metadata")
    if copy is not None and (not isinstance(copy, dict) or copy.get("metadata") != metas):
        # what readers use instead of each node's file: a copy that differs from the files is rewritten
        return f"{path / 'zarr.json'}: its copy of the nodes' metadata differs from their own zarr.json files"
    return None


