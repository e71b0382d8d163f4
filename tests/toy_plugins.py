"""A toy dataset and a toy decode backend, each registered by name from this one module, as a user would add
theirs without touching engine/ (see test_plugins.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.datasets import Dataset, register_dataset
from engine.decode import register_backend
from engine.decode.types import FrameChunk, scaled_size
from engine.records import Item, Segment
from kernels.align import on_grid


@register_dataset
class Toy(Dataset):
    """Every ``*.mp4`` of a folder is an item; ``<name>.txt`` beside it is its one sentence."""

    name = "toy"
    clip_level = True
    shard_items = 2

    def discover(self, root: Path, config: dict) -> list[Item]:
        items = []
        for mp4 in sorted(Path(root).glob("*.mp4")):
            text = mp4.with_suffix(".txt").read_text(encoding="utf-8")
            items.append(Item(id=mp4.stem, split=self.name, lang="en", media=str(mp4), source=mp4.name,
                              duration_s=None, segments=[Segment(0.0, float("inf"), text)]))
        return items


@register_backend
class ToyBackend:
    """Every frame through PyAV's plain decode loop, one frame per chunk (slow, simple, and its own code)."""

    name = "toy"

    @staticmethod
    def available(device: str = "cpu") -> tuple[bool, str]:
        return (True, "") if device == "cpu" else (False, "the toy decodes on the CPU")

    @staticmethod
    def frames(path: str, fps: float | None, info=None, short_side: int = 256, **_):
        import av
        with av.open(path) as c:
            stream = c.streams.video[0]
            frames = [(f.pts * float(stream.time_base), f) for f in c.decode(stream)]
            step = 1.0 / float(stream.average_rate)  # read while the container is open: after, it is freed memory
        for k, (t, f) in enumerate(frames):
            t_next = frames[k + 1][0] if k + 1 < len(frames) else t + step
            if on_grid(t, t_next, fps):
                w, h = scaled_size(f.width, f.height, short_side)
                yield FrameChunk(f.reformat(width=w, height=h, format="rgb24").to_ndarray()[None],
                                 np.array([t], np.float64))
