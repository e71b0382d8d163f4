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

from kernels.align import window_rows

from .reader import StoreReader

N_GOEMOTIONS = 28


class WindowDataset(torch.utils.data.Dataset):
    """Windows over the complete items of a store.

    by="window": ``[k * hop_s, k * hop_s + window_s)`` for every whole window inside each item (one window, padded,
    for an item shorter than ``window_s``).
    by="segment": one sample per sentence segment, ``[start, end)``.
    Each sample's labels are those of the segment that overlaps the window most (-1 / zeros where none does).
    """

    def __init__(self, store: str | Path | StoreReader, window_s: float = 8.0, hop_s: float | None = None,
                 groups: list[str] | None = None, items: list[str] | None = None, by: str = "window",
                 pool: bool = False):
        self.reader = store if isinstance(store, StoreReader) else StoreReader(store)
        if by not in ("window", "segment"):
            raise ValueError("by must be 'window' or 'segment'")
        self.by, self.pool = by, pool
        self.item_ids = list(items) if items is not None else self.reader.items()
        first = self.reader.item(self.item_ids[0]) if self.item_ids else None
        self.groups = list(groups) if groups is not None else (list(first.groups) if first else [])
        self.index: list[tuple[str, float, float, int]] = []  # (item, t0, t1, segment)
        self.max_rows = {g: 1 for g in self.groups}  # fixed row count per modality: the most any sample holds
        hop_s = hop_s or window_s
        for iid in self.item_ids:
            it = self.reader.item(iid)
            missing = [g for g in self.groups if g not in it.groups]
            if missing:
                raise KeyError(f"{iid}: no modality {missing} (has {list(it.groups)})")
            start = len(self.index)
            if by == "segment":
                seg = it.segments
                for k, (a, b) in enumerate(zip(seg.get("start", []), seg.get("end", []))):
                    self.index.append((iid, float(a), float(b), k))
            else:
                n = max(1, int(np.floor((it.duration_s - window_s) / hop_s + 1e-9)) + 1)
                for k in range(n):
                    t0 = k * hop_s
                    self.index.append((iid, t0, t0 + window_s, it.segment_at(t0, t0 + window_s)))
            for _, t0, t1, _ in self.index[start:]:
                for g in self.groups:
                    i0, i1 = window_rows(it.groups[g].t, t0, t1)
                    self.max_rows[g] = max(self.max_rows[g], i1 - i0)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        iid, t0, t1, k = self.index[i]
        it = self.reader.item(iid)
        win = it.window(t0, t1, self.groups)
        feats, masks = {}, {}
        for g, w in win.items():
            x = torch.from_numpy(np.array(w.features, dtype=np.float32))
            if self.pool:
                feats[g] = x.mean(dim=0) if len(x) else torch.zeros(x.shape[1])
                masks[g] = torch.tensor(len(x) > 0)
                continue
            L = self.max_rows[g]
            pad = torch.zeros(L, x.shape[1])
            pad[:len(x)] = x
            m = torch.zeros(L, dtype=torch.bool)
            m[:len(x)] = True
            feats[g], masks[g] = pad, m
        lab = it.labels
        label, inten, goemo = -1, -1, torch.zeros(N_GOEMOTIONS)
        if k >= 0 and "primary" in lab:
            label = int(lab["primary"][k])
            inten = int(lab["intensity"][k]) if "intensity" in lab else -1
            if "goemotions" in lab:
                goemo = torch.from_numpy(np.asarray(lab["goemotions"][k], np.float32))
        return {"item": iid, "t0": t0, "t1": t1, "segment": k, "features": feats, "mask": masks,
                "label": label, "intensity": inten, "goemotions": goemo}

