"""PyTorch views of a feature store: fixed windows or sentence segments, with the labels they cover.

>>> from engine.torchdata import WindowDataset                                  # doctest: +SKIP
>>> ds = WindowDataset("emos_features/stream.zarr", window_s=8.0, hop_s=4.0)   # doctest: +SKIP
>>> loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=2)  # doctest: +SKIP
>>> batch = next(iter(loader))                                                 # doctest: +SKIP
>>> batch["features"]["visual"].shape, batch["mask"]["visual"].shape, batch["label"].shape  # doctest: +SKIP
(torch.Size([32, 34, 1280]), torch.Size([32, 34]), torch.Size([32]))

Rows are padded to a fixed length per modality (the most any window of the dataset holds), with a boolean mask,
so the default collate works. ``pool=True`` gives the masked mean per modality instead ([D]).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import StoreError
from .reader import StoreReader

N_GOEMOTIONS = 28
_TRUE, _FALSE = torch.tensor(True), torch.tensor(False)


class WindowDataset(torch.utils.data.Dataset):
    """Windows over the complete items of a store.

    by="window": ``[k * hop_s, k * hop_s + window_s)`` for every whole window inside each item (one window, padded,
    for an item shorter than ``window_s``).
    by="segment": one sample per sentence segment, ``[start, end)``.
    Each sample's labels are those of the segment that overlaps the window most (-1 / zeros where none does).
    The index (item, bounds, segment and row range per modality of every sample) is built once, with numpy;
    a sample is then a few slices of memory maps.
    """

    def __init__(self, store: str | Path | StoreReader, window_s: float = 8.0, hop_s: float | None = None,
                 groups: list[str] | None = None, items: list[str] | None = None, by: str = "window",
                 pool: bool = False):
        self.reader = store if isinstance(store, StoreReader) else StoreReader(store)
        if by not in ("window", "segment"):
            raise ValueError("by must be 'window' or 'segment'")
        if by == "window" and not (window_s > 0 and (hop_s is None or hop_s > 0)):
            raise ValueError(f"window_s and hop_s must be > 0 seconds, not {window_s}, {hop_s}")
        self.by, self.pool = by, pool
        self.item_ids = list(items) if items is not None else self.reader.items()
        first = self.reader.item(self.item_ids[0]) if self.item_ids else None
        self.groups = list(groups) if groups is not None else (list(first.groups) if first else [])
        hop_s = hop_s or window_s
        s_item, s_t0, s_t1, s_seg = [], [], [], []
        rows = {g: ([], []) for g in self.groups}  # row range of each sample within its item, per modality
        for n, iid in enumerate(self.item_ids):
            it = self.reader.item(iid)
            gs = it.groups
            missing = [g for g in self.groups if g not in gs]
            if missing:
                raise KeyError(f"{iid}: no modality {missing} (has {list(gs)})")
            if by == "segment":
                seg = it.segments
                t0, t1 = np.asarray(seg["start"], np.float64), np.asarray(seg["end"], np.float64)
                k = np.arange(len(t0))
            else:
                m = max(1, int(np.floor((it.duration_s - window_s) / hop_s + 1e-9)) + 1)
                t0 = np.arange(m) * hop_s
                t1 = t0 + window_s
                k = np.array([it.segment_at(a, b) for a, b in zip(t0, t1)], np.int64)
            s_item.append(np.full(len(t0), n, np.int64))
            s_t0.append(t0)
            s_t1.append(t1)
            s_seg.append(k)
            for g in self.groups:
                t = gs[g].t
                rows[g][0].append(np.searchsorted(t, t0, side="left"))
                rows[g][1].append(np.maximum(np.searchsorted(t, t1, side="left"), rows[g][0][-1]))
        cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
        self.s_item, self.s_t0, self.s_t1 = cat(s_item, np.int64), cat(s_t0, np.float64), cat(s_t1, np.float64)
        self.s_seg = cat(s_seg, np.int64)
        self.rows = {g: (cat(a, np.int64), cat(b, np.int64)) for g, (a, b) in rows.items()}
        # fixed row count per modality: the most any sample holds (so the default collate works)
        self.max_rows = {g: max(1, int((b - a).max()) if len(a) else 1) for g, (a, b) in self.rows.items()}
        # the shard versions the index was built on: a DataLoader worker that unpickles this dataset opens the
        # store afresh, and must not apply these row ranges to a version published since
        where = self.reader._where
        self.versions = {where[iid].key: where[iid].path.name for iid in self.item_ids}

    @property
    def index(self) -> list[tuple[str, float, float, int]]:
        """``(item, t0, t1, segment)`` of every sample."""
        return [(self.item_ids[n], float(a), float(b), int(k))
                for n, a, b, k in zip(self.s_item, self.s_t0, self.s_t1, self.s_seg)]

    def __len__(self) -> int:
        return len(self.s_item)

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_fast"}  # rebuilt in each DataLoader worker

    def _fast_index(self) -> "_FastIndex":
        """Per sample, as Python lists: its item's shard, absolute row ranges, whether a range is the whole item,
        and its labels. Built once per process (a DataLoader worker: on its first sample), on the shard versions
        the index was built on: a shard published again since is a StoreError, never rows of another version."""
        f = self.__dict__.get("_fast")
        if f is None:
            f = self._fast = _FastIndex(self)
        return f

    def __getitem__(self, i: int) -> dict:
        f = self._fast_index()
        i = int(i)
        iid, shard, kk = f.items[f.item_of[i]]
        packed = shard.groups
        feats, masks = {}, {}
        for g, (starts, ends, whole) in f.rows.items():
            p, a, b = packed[g], starts[i], ends[i]
            if self.pool:
                if whole[i] and b > a and p.pooled is not None:  # the shard's mean: one row instead of all
                    feats[g] = torch.from_numpy(np.array(p.pooled[kk], dtype=np.float32))
                else:
                    feats[g] = torch.from_numpy(_pool(p.rows[a:b], p.rows.shape[1]))
                masks[g] = _TRUE if b > a else _FALSE  # shared constants: collate stacks them into a new tensor
                continue
            x = torch.from_numpy(np.array(p.rows[a:b], dtype=np.float32))
            L = self.max_rows[g]
            pad = torch.zeros(L, x.shape[1])
            pad[:len(x)] = x
            m = torch.zeros(L, dtype=torch.bool)
            m[:len(x)] = True
            feats[g], masks[g] = pad, m
        j = f.label_row[i]
        g28 = shard.labels_loaded.get("goemotions") if j >= 0 else None
        goemo = torch.from_numpy(np.asarray(g28[j], np.float32)) if g28 is not None else torch.zeros(N_GOEMOTIONS)
        return {"item": iid, "t0": f.t0[i], "t1": f.t1[i], "segment": f.segment[i], "features": feats,
                "mask": masks, "label": f.label[i], "intensity": f.intensity[i], "goemotions": goemo}


class _FastIndex:
    def __init__(self, ds: WindowDataset):
        where = ds.reader._where
        gone = [iid for iid in ds.item_ids if iid not in where]
        if gone:
            raise StoreError(f"{ds.reader.path}: {len(gone)} item(s) of this WindowDataset ({gone[0]!r}, ...) are no "
                             "longer in the store; build the dataset again")
        self.items = [(iid, where[iid], where[iid].pos[iid]) for iid in ds.item_ids]
        self.item_of = ds.s_item.tolist()
        si = ds.s_item
        self.rows = {}
        for g in ds.groups:
            bounds = [it[1].packed[g].bounds for it in self.items]
            a0 = np.array([b[it[2]] for b, it in zip(bounds, self.items)], np.int64)[si]
            b0 = np.array([b[it[2] + 1] for b, it in zip(bounds, self.items)], np.int64)[si]
            a, b = ds.rows[g][0] + a0, ds.rows[g][1] + a0
            self.rows[g] = (a.tolist(), b.tolist(), ((a == a0) & (b == b0)).tolist())
        self.t0, self.t1, self.segment = ds.s_t0.tolist(), ds.s_t1.tolist(), ds.s_seg.tolist()
        seg_base = np.array([it[1].seg_offsets[it[2]] for it in self.items], np.int64)[si]
        rows = np.where(ds.s_seg >= 0, seg_base + ds.s_seg, -1)
        self.label_row = rows.tolist()
        label, intensity = np.full(len(rows), -1, np.int64), np.full(len(rows), -1, np.int64)
        shards = {id(it[1]): it[1] for it in self.items}  # a few shards hold many items: one pass per shard
        pos = {key: k for k, key in enumerate(shards)}
        sample_shard = np.array([pos[id(it[1])] for it in self.items], np.int64)[si]
        for k, shard in enumerate(shards.values()):
            labels = shard.labels_loaded
            if "primary" not in labels:
                continue
            i = np.flatnonzero((sample_shard == k) & (rows >= 0))
            label[i] = np.asarray(labels["primary"], np.int64)[rows[i]]
            if "intensity" in labels:
                intensity[i] = np.asarray(labels["intensity"], np.int64)[rows[i]]
        self.label, self.intensity = label.tolist(), intensity.tolist()
        for shard in shards.values():  # each loaded above: the version read is final
            if ds.versions.get(shard.key) != shard.path.name:
                raise StoreError(f"{shard.path}: shard {shard.key} was published again (the index was built on "
                                 f"{ds.versions.get(shard.key)}) after this WindowDataset was built, so its row "
                                 "index no longer matches; build the dataset again")


def _pool(x: np.ndarray, dim: int) -> np.ndarray:
    """The mean of rows ``x`` leaving NaN values out (a face absent from some frames); zeros for no rows."""
    if len(x) <= 1:  # no rows, or one (a sentence's text): the mean is the row itself
        return np.array(x[0], dtype=np.float32) if len(x) else np.zeros(dim, np.float32)
    x = np.asarray(x, dtype=np.float32)
    m = np.add.reduce(x, axis=0) / np.float32(len(x))  # x.mean(axis=0), the same sums, without its Python wrapper
    if np.isnan(m).any():
        with np.errstate(all="ignore"):
            ok = ~np.isnan(x)
            m = np.where(ok, x, 0).sum(axis=0) / ok.sum(axis=0)  # NaN where no row has a value
    return m.astype(np.float32)
