"""Cache decisions: which modalities of an item must be computed, and which shards must be rewritten.

:func:`plan_item` decides per item and per modality (the cache stays per item); :func:`plan_shards` turns those
decisions into shard tasks: an item already in the store is redone inside the shard that holds it, new items are
packed into new shards. Both change nothing they are given. The driver plans once (to start no worker when all is
cached), and each worker plans again under the shard's lock, so two runs never compute one item twice.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from ..fingerprint import digest, media_fingerprint, modality_key
from ..records import Group, Item, ItemResult

T = TypeVar("T")


@dataclass
class ItemPlan:
    compute: list[str]
    reuse: list[str]
    keys: dict[str, str]
    media: dict | None
    meta_fingerprint: str
    rewrite: bool  # something must be written (a group, or changed segments/labels)


@dataclass
class ShardTask:
    """Items to (re)compute in one shard. Members of the shard not listed here are carried over as they are."""

    key: str
    items: list[Item] = field(default_factory=list)


def plan_item(item: Item, groups: list[Group], old_attrs: dict | None, force: bool) -> ItemPlan:
    """What to compute for ``item`` given its published attributes (None when it is not in the store)."""
    old = old_attrs or {}
    # the driver's fresh fingerprint first: a worker never hashes what the driver just hashed
    media = media_fingerprint(item.media, item.media_fp or old.get("media")) if item.media else None
    meta_fp = item.meta_fingerprint()
    text_digest = digest([(s.start_s, s.end_s, s.text) for s in item.segments], item.lang)
    keys, compute, reuse = {}, [], []
    old_keys = old.get("fingerprints", {})
    for g in groups:
        keys[g.name] = modality_key(g.modality, media and media["blake2b"], text_digest, g.spec.digest(),
                                    g.settings)
        if not force and old_keys.get(g.name) == keys[g.name] and not old.get("damaged"):
            reuse.append(g.name)
        else:
            compute.append(g.name)
    # a touched but unchanged file (same hash, new mtime) is republished once, all groups reused, so that later
    # runs recognise it by size and mtime again instead of rehashing it every time
    rewrite = bool(compute) or old.get("meta_fingerprint") != meta_fp or \
        sorted([*old.get("groups", []), *old.get("missing", {})]) != sorted(keys) or \
        (media is not None and old.get("media") != media)
    return ItemPlan(compute, reuse, keys, media, meta_fp, rewrite)


def new_shard_key(item_ids: list[str]) -> str:
    """The key of a new shard: a digest of its members, so that two runs packing the same new items agree."""
    return "s" + digest(*item_ids, size=8)


def plan_shards(items: list[Item], groups: list[Group], index: dict[str, tuple[str, dict]], shard_items: int,
                force: bool, ready: Callable[[ShardTask], None] | None = None
                ) -> tuple[list[ShardTask], list[ItemResult]]:
    """Shard tasks for the items that need work, and the results of those that need none (cached or failed).

    ``index`` maps the published items to ``(shard key, attrs)``. Items are hashed here (once per run); the
    fingerprint travels with the task's copy of the item so that workers never rehash. ``ready(task)`` hears of
    each task as soon as its items are planned, so that workers start on the first while the rest are hashed (a
    first run reads every media file once here): first the shards already in the store (their items are rarely
    hashed again: size and mtime say they are unchanged), then the new ones, packed ``shard_items`` items each in
    the order of their ids, a failed item leaving its place empty. Within each of the two, tasks go out in
    :func:`hand_out_order`.
    """
    done: list[ItemResult] = []
    tasks: list[ShardTask] = []
    by_key: dict[str, ShardTask] = {}
    new: list[Item] = []

    def plan(it: Item, old: dict | None) -> bool:
        """Whether ``it`` needs work (its fingerprint then set on it); its result in ``done`` when it does not."""
        if it.error is not None:
            done.append(ItemResult.failed(it, it.error))
            return False
        try:
            p = plan_item(it, groups, old, force)
        except OSError as exc:
            done.append(ItemResult.failed(it, f"{it.id}: cannot read media ({exc}) [{it.media}]"))
            return False
        if not p.rewrite:
            done.append(ItemResult(id=it.id, status="cached", source=it.source, reused=p.reuse, lang=it.lang,
                                   media_s=float(old.get("duration_s") or 0.0), warnings=list(it.warnings)))
            return False
        it.media_fp = p.media
        return True

    def hand(task: ShardTask) -> None:
        tasks.append(task)
        if ready is not None:
            ready(task)

    for it in items:
        key, old = index.get(it.id, (None, None))
        if key is None:
            new.append(it)
        elif plan(it, old):
            by_key.setdefault(key, ShardTask(key)).items.append(it)
    for task in hand_out_order(list(by_key.values()), lambda t: t.items):
        hand(task)
    new.sort(key=lambda i: i.id)
    step = max(1, shard_items)
    for members in hand_out_order([new[i:i + step] for i in range(0, len(new), step)], lambda m: m):
        chunk = [it for it in members if plan(it, None)]
        if chunk:
            hand(ShardTask(new_shard_key([it.id for it in chunk]), chunk))
    return tasks, done


def hand_out_order(shards: list[T], items_of: Callable[[T], list[Item]]) -> list[T]:
    """The order shards go to the workers, by the bytes of their media files: the smallest first (its result, or
    the error of a bad setting, comes soonest), then the largest first (a long film handed out last would run
    alone at the end while the other workers idle). Equal sizes keep their order; which items a shard holds never
    depends on it."""
    def size(shard) -> int:
        total = 0
        for it in items_of(shard):
            try:
                total += os.stat(it.media).st_size if it.media else 0
            except OSError:  # planning fails the item and names the file
                pass
        return total
    if not shards:
        return []
    sizes = [size(s) for s in shards]
    first = min(range(len(shards)), key=lambda i: (sizes[i], i))
    rest = sorted((i for i in range(len(shards)) if i != first), key=lambda i: (-sizes[i], i))
    return [shards[i] for i in (first, *rest)]
