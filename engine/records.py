"""Plain records that travel between the driver, the workers and the store: data only, no behaviour of weight.

``Item`` (one film or clip as a dataset found it), ``Segment``, ``Group`` (a store group and the extractor that
fills it), ``RunPlan`` (everything a worker needs) and ``ItemResult`` (what became of an item).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import ItemError, StoreError
from .fingerprint import digest

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def check_item_id(name: str) -> str | None:
    """Why ``name`` cannot name an item (report lines, plot file names), or None if it can.

    >>> check_item_id("dia3_utt1"), check_item_id("a/b")
    (None, 'name contains a path separator or a control character')
    """
    if not name or name in (".", "..") or name.startswith(".") or name.startswith("__"):
        return "name is empty, hidden or reserved"
    if _UNSAFE.search(name):
        return "name contains a path separator or a control character"
    if len(name.encode()) > 200:
        return "name is longer than 200 bytes"
    return None


@dataclass
class Segment:
    """A sentence of an item, in seconds from the media's start. ``end_s = inf``: until the media ends."""

    start_s: float
    end_s: float
    text: str                 # what is encoded
    raw_text: str | None = None  # the text as the metadata gives it, where cleaning changed it


@dataclass
class Item:
    """One film or clip, with everything the workers need except the media itself."""

    id: str
    split: str                            # the dataset's name
    lang: str
    media: str | None                     # absolute path of the media file
    source: str                           # media path relative to the root (stored in attrs)
    duration_s: float | None              # from the metadata; checked against the media
    segments: list[Segment] = field(default_factory=list)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    label_attrs: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)          # extra item attrs (film title, global offsets, ...)
    warnings: list[str] = field(default_factory=list)
    error: ItemError | None = None
    media_fp: dict | None = None                      # set by the driver once hashed: workers need not rehash

    def meta_fingerprint(self) -> str:
        """Digest of everything but the media that ends up in the store (segments, labels, attrs)."""
        labels = []
        for k in sorted(self.labels):
            a = np.asarray(self.labels[k])
            raw = a.tobytes().hex() if a.dtype.kind not in "UO" else "\x1f".join(map(str, a.ravel()))
            labels.append((k, str(a.dtype), a.shape, raw))
        return digest(self.id, self.lang, self.source, self.duration_s, self.meta,
                      [(s.start_s, s.end_s, s.text, s.raw_text) for s in self.segments], self.label_attrs, labels)

    def fail(self, message: str, file: str | None = None, cls=ItemError):
        if self.error is None:
            self.error = cls(message, item=self.id, file=file)

    def segment_ends(self, duration_s: float) -> np.ndarray:
        """Segment ends with ``inf`` ("until the media ends") resolved to ``duration_s``."""
        return np.array([duration_s if math.isinf(s.end_s) else s.end_s for s in self.segments], np.float64)


@dataclass
class Group:
    """A store group and the extractor that fills it (specs travel to workers: plain data)."""

    name: str
    spec: object  # extractors.ExtractorSpec
    settings: dict = field(default_factory=dict)  # run settings that change this group's output

    @property
    def modality(self) -> str:
        return self.spec.modality


@dataclass
class RunPlan:
    """Everything a worker needs, as plain data."""

    out: str
    split: str                         # the dataset's name: the store is <out>/<split>.zarr
    groups: list[Group]
    decode: dict
    store_dtype: str = "float32"
    duration_tolerance_s: float = 1.0
    force: bool = False
    threads: int = 0                   # the worker's CPU share in threads (set by the pool from its placement)
    model_threads: int = 0             # threads of a CPU model's own pool (0: half of ``threads``, at least one)
    half_precision: bool = True
    pooled: bool = False               # the dataset's items are clips: store one mean vector per group and item
    batch_items: int = 8               # items whose audio a worker decodes ahead of the encoders
    device: str = "cpu"                # the device extractors run on (set in the actor)


@dataclass
class ItemResult:
    id: str
    status: str                      # ok | cached | failed
    source: str = ""
    media_s: float = 0.0
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    worker_pid: int = 0
    node: str = ""                   # the Ray node that ran it (set by the actor)
    lang: str = ""

    @classmethod
    def failed(cls, item: Item, error: str | BaseException, **kw) -> "ItemResult":
        """The one way to record a failed item: ``error`` is a report line or an exception naming what went wrong."""
        if isinstance(error, ItemError):
            error.item = error.item or item.id
            error.file = error.file or item.media
            line = error.line()
        elif isinstance(error, StoreError):  # the output's fault: the line names the store, not the media
            line = f"{item.id}: {error}"
        elif isinstance(error, BaseException):
            line = f"{item.id}: {type(error).__name__}: {error} [{item.media}]"
        else:
            line = error
        return cls(id=item.id, status="failed", source=item.source, error=line, lang=item.lang,
                   warnings=list(item.warnings), **kw)
