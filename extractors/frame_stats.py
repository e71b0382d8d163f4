"""Cheap per-frame statistics: luma mean and std, motion energy, shot-cut score.

Useful to filter shot transitions (the EmoS paper did so for MELD) and to see alignment at a glance: a cut in the
film is a spike in column 3 at the cut's time.
"""
from __future__ import annotations

import numpy as np
import torch

from kernels.image import as_frames, luma, to_float

from .base import Extractor


class FrameStats(Extractor):
    """Columns: ``luma_mean``, ``luma_std`` (0-1), ``motion`` (mean |luma - previous luma|), ``cut`` (histogram
    distance to the previous frame, 0-1). The first frame of an item has motion and cut 0."""

    columns = ("luma_mean", "luma_std", "motion", "cut")

    def begin_item(self) -> None:
        self._prev_luma = None
        self._prev_hist = None

    def extract(self, frames: np.ndarray) -> np.ndarray:
        size = int(self.spec.params.get("size", 64))
        # statistics on the CPU, wherever the frames were decoded; contiguous first: area pooling and the luma sum
        # run 1.6x and 3x faster on it than on the channels-last view, with the same values
        x = to_float(as_frames(frames)).contiguous()
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="area")
        y = luma(x)                                              # [B, s, s]
        mean = y.mean(dim=(1, 2))
        std = y.std(dim=(1, 2), unbiased=False)
        prev = y[:1] if self._prev_luma is None else self._prev_luma
        shifted = torch.cat([prev, y[:-1]])
        motion = (y - shifted).abs().mean(dim=(1, 2))
        hist = torch.stack([torch.histc(f, bins=32, min=0.0, max=1.0) for f in y]) / (size * size)
        prev_h = hist[:1] if self._prev_hist is None else self._prev_hist
        cut = 0.5 * (hist - torch.cat([prev_h, hist[:-1]])).abs().sum(dim=1)
        self._prev_luma, self._prev_hist = y[-1:], hist[-1:]
        return torch.stack([mean, std, motion, cut], dim=1).numpy()

    def attrs(self):
        return {**super().attrs(), "columns": list(self.columns)}
