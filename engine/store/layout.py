"""The store's layout: every node and attribute name, in one place (the README's contract mirrors this).

``<out>/<split>.zarr`` is a Zarr v3 group. Items are packed into **shards**: child groups named
``<key>.<version>``, each holding many items (a film is a one-item shard, clips are packed a thousand to a shard).
A shard is written whole in a staging folder and renamed into the store; a newer version of a key replaces the
older one, which is deleted afterwards. Inside a shard every array is uncompressed, in one chunk (its chunk file is
the raw little-endian array, so readers memory-map it), and rows of all items are concatenated::

    <shard>/                      attrs: complete, item_ids [I], items {id: item attrs}, groups, shard_key,
                                  version, chunk_digests
      items/id                    [I] str                 (item)
      items/duration_s            [I] float64             (item)
      <group>/features            [N, D]                  (time, feature)
      <group>/t                   [N] float64 seconds     (time)
      <group>/offsets             [I + 1] int64           (item_edge): rows of item k are offsets[k]:offsets[k+1]
      <group>/pooled              [I, D]                  (item, feature)  clip datasets only: mean of the rows
      segments/start, end         [S] float64             (segment)
      segments/text               [S] str                 (segment)
      segments/offsets            [I + 1] int64
      labels/<name>               [S, ...]                (segment, label)  per segment, offsets of segments/
      turning_points/segment      [P] int32               (turning_point)   segment index within its item
      turning_points/offsets      [I + 1] int64

An item absent from a modality (no audio track) has an empty row range there and says why in its ``missing``
attribute. Nothing under ``<out>/.emos/`` (staging, trash, locks) is part of the Zarr store.
"""
from __future__ import annotations

STORE_FORMAT = 2            # 2: items packed into shards (1 was one group per item)
PRIVATE = ".emos"           # beside the stores: staging, trash, locks

ITEMS = "items"
SEGMENTS = "segments"
LABELS = "labels"
TURNING_POINTS = "turning_points"
RESERVED = (ITEMS, SEGMENTS, LABELS, TURNING_POINTS)  # never a modality group's name

FEATURES, TIMES, OFFSETS, POOLED = "features", "t", "offsets", "pooled"

# shard attributes
COMPLETE, ITEM_IDS, ITEM_ATTRS, SHARD_KEY, VERSION = "complete", "item_ids", "items", "shard_key", "version"
GROUPS = "groups"           # the modality groups of the shard, in order
DIGESTS = "chunk_digests"   # {relative chunk path: blake2b}, written at publish, checked by `inspect --verify`


def shard_dir_name(key: str, version: int) -> str:
    """``<key>.<version>``: versions sort as text (fixed width), the newest complete one is the shard."""
    return f"{key}.{version:016x}"


def parse_shard_dir(name: str) -> tuple[str, int] | None:
    """``(key, version)`` of a shard folder name, or None for anything else."""
    key, dot, ver = name.rpartition(".")
    if not dot or not key or key.startswith(".") or len(ver) != 16:
        return None
    try:
        return key, int(ver, 16)
    except ValueError:
        return None


def label_dims(name: str, ndim: int) -> tuple[str, ...]:
    """Dimension names of a per-segment label array."""
    return ("segment", "label", "annotator")[:max(1, ndim)]
