"""Cache decisions: which modalities of an item must be computed, and which are reused as they are.

One function, :func:`plan_item`, used by the driver (to skip items that are fully cached without starting any
worker) and by the worker (again, under the item's lock, so that two runs never compute one item twice).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .dataset import Item
from .fingerprint import digest, media_fingerprint, modality_key


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
class ItemPlan:
    compute: list[str]
    reuse: list[str]
    keys: dict[str, str]
    media: dict | None
    meta_fingerprint: str
    rewrite: bool  # something must be written (a group, or changed segments/labels)


def plan_item(item: Item, groups: list[Group], old_attrs: dict | None, force: bool) -> ItemPlan:
    old = old_attrs if old_attrs and old_attrs.get("complete") is True else {}
    # the driver's fresh fingerprint first: a worker never hashes what the driver just hashed
    media = media_fingerprint(item.media, item.media_fp or old.get("media")) if item.media else None
    item.media_fp = media
    meta_fp = item.meta_fingerprint()
    text_digest = digest([(s.start_s, s.end_s, s.text) for s in item.segments], item.lang)
    keys, compute, reuse = {}, [], []
    old_keys = old.get("fingerprints", {})
    for g in groups:
        keys[g.name] = modality_key(g.modality, media and media["blake2b"], text_digest, g.spec.digest(),
                                   g.settings)
        if not force and old_keys.get(g.name) == keys[g.name]:
            reuse.append(g.name)
        else:
            compute.append(g.name)
    # a touched but unchanged file (same hash, new mtime) is republished once, all groups reused (hard links),
    # so that later runs recognise it by size and mtime again instead of rehashing it every time
    rewrite = bool(compute) or old.get("meta_fingerprint") != meta_fp or \
        sorted([*old.get("groups", []), *old.get("missing", {})]) != sorted(keys) or \
        (media is not None and old.get("media") != media)
    return ItemPlan(compute, reuse, keys, media, meta_fp, rewrite)
