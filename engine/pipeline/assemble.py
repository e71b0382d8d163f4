"""A new version of a shard, put together from what was just computed and what the old version holds.

Computed groups come from the jobs; reused groups (unchanged cache keys) and members of the shard that this run
did not touch are copied from the old version's memory maps. A member whose old rows no longer fit the run's
groups (its extractor changed and it was not recomputed) keeps only the groups that still fit, and says why the
others are missing. An item that failed now keeps its previous version, as a file that could not be read
again leaves the store as it was.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import StoreError
from ..records import RunPlan
from ..store import ItemRows
from .jobs import Job

log = logging.getLogger(__name__)


class OldShard:
    """The published version of a shard (or nothing), read for reuse."""

    def __init__(self, shard=None):
        self.shard = shard
        self.pos = {iid: k for k, iid in enumerate(shard.ids)} if shard is not None else {}

    @classmethod
    def open(cls, path: Path | None) -> "OldShard":
        if path is None:
            return cls()
        from ..read.item import Shard
        from ..store.zarrjson import read_attrs
        try:
            # the attributes alone: every array's own zarr.json is read and checked (not the consolidated copy),
            # so that damaged metadata is found here and the shard rewritten
            shard = Shard(path, {"attributes": read_attrs(path) or {}}, lambda s: s)
            shard.packed  # noqa: B018  (loads and checks every array now)
            return cls(shard)
        except (StoreError, OSError) as exc:  # a damaged version: nothing in it is reused
            log.warning("%s: the published shard is damaged (%s); its items are recomputed", path, exc)
            return cls()

    @property
    def ids(self) -> list[str]:
        return list(self.pos)

    def attrs_of(self, item_id: str) -> dict | None:
        if item_id not in self.pos:
            return None
        return self.shard.item_attrs.get(item_id)

    def group_rows(self, item_id: str, group: str) -> tuple[np.ndarray, np.ndarray] | None:
        p = self.shard.packed.get(group)
        if p is None:
            return None
        k = self.pos[item_id]
        a, b = p.offsets[k], p.offsets[k + 1]
        return np.asarray(p.features[a:b]), np.asarray(p.t[a:b])

    def group_fits(self, group: str, attrs: dict) -> bool:
        """Whether the old rows of ``group`` were made by the same extractor with the same settings."""
        p = self.shard.packed.get(group)
        return p is not None and p.attrs.get("config_digest") == attrs.get("config_digest") \
            and p.attrs.get("settings") == attrs.get("settings") and p.attrs.get("dim") == attrs.get("dim")

    def carried(self, item_id: str) -> ItemRows:
        """An untouched member, as the old version holds it."""
        from ..read.item import ItemView
        view = ItemView(self.shard, item_id)
        return ItemRows(item_id, dict(view.attrs), segments=dict(view.segments), labels=dict(view.labels),
                        label_attrs=dict(self.shard.label_attrs))


def _segments(job: Job) -> dict:
    item = job.item
    segs = {"start": np.array([s.start_s for s in item.segments], np.float64),
            "end": item.segment_ends(job.info.duration_s),
            "text": np.array([s.text for s in item.segments], dtype=object)}
    if any(s.raw_text is not None for s in item.segments):
        segs["text_raw"] = np.array([s.raw_text if s.raw_text is not None else s.text for s in item.segments],
                                    dtype=object)
    return segs


def assemble(jobs: list[Job], old: OldShard, plan: RunPlan, group_attrs: dict, item_attrs) -> list[ItemRows]:
    """Every member of the new version, in id order: the jobs that succeeded and the other old members. A job
    that failed keeps its previous version where there is one (what was written is never lost; its failure is in
    the run report), and is left out where there is none."""
    by_id = {j.item.id: j for j in jobs if j.error is None}
    rows: list[ItemRows] = []
    for iid in sorted(set(by_id) | set(old.ids)):
        job = by_id.get(iid)
        if job is None:
            r = old.carried(iid)
            present = []
            for g in plan.groups:
                if g.name in r.attrs.get("groups", []) and old.group_fits(g.name, group_attrs[g.name]):
                    r.groups[g.name] = old.group_rows(iid, g.name)
                    present.append(g.name)
                elif g.name not in r.attrs.get("missing", {}):
                    r.attrs.setdefault("missing", {})[g.name] = "not computed for this item with the current " \
                                                                "extractor (the item was not part of the run)"
            r.attrs["groups"] = present
            rows.append(r)
            continue
        r = ItemRows(iid, {}, segments=_segments(job), labels=dict(job.item.labels),
                     label_attrs=dict(job.item.label_attrs))
        for g in plan.groups:
            if g.name in job.missing:
                continue
            if g.name in job.plan.reuse:
                got = old.group_rows(iid, g.name)
                if got is None:
                    raise StoreError(f"{iid}: group {g.name} was to be reused but the old shard lacks it")
                r.groups[g.name] = got
            else:
                r.groups[g.name] = job.result(g.name, g.spec.dim)
        r.attrs = item_attrs(job, [g.name for g in plan.groups if g.name in r.groups])
        rows.append(r)
    return rows
