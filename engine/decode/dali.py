"""GPU decoding with NVIDIA DALI (NVDEC, ``device="mixed"``).

Unverified on hardware: no GPU was available where this was written (see the README). The module is kept small
and follows the CPU backend's contract exactly: frames on the ``k / fps`` presentation-time grid, RGB uint8, short
side scaled, yielded in chunks with their real presentation times.

DALI is known to slow down badly on long videos read in one sequence (DALI issues #5672, #5776), so the reader
walks the file in fixed sequences of ``chunk_frames`` frames (``step == sequence_length``) and never holds more
than one sequence; frame selection uses the timestamps DALI returns (``enable_timestamps``).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from kernels.align import on_grid

from . import register_backend
from .types import FrameChunk, MediaInfo, rotate, scaled_size


def available(device: str = "gpu") -> tuple[bool, str]:
    """Whether DALI can decode here, and if not, why (for the log and the README's honesty)."""
    try:
        import torch
        if not torch.cuda.is_available():
            return False, "CUDA is not available"
    except Exception as exc:  # pragma: no cover - torch always imports in a worker
        return False, f"torch: {exc}"
    try:
        import nvidia.dali  # noqa: F401
    except Exception:
        return False, "nvidia-dali is not installed (pip install -e .[gpu])"
    return True, ""


def pipeline_kwargs(path: str, chunk_frames: int, short_side: int, width: int, height: int,
                    device_id: int = 0) -> dict:
    """Arguments of the DALI video reader and resize, computed without DALI (unit-tested on CPU)."""
    w, h = scaled_size(width, height, short_side)
    return {
        "reader": dict(device="gpu", filenames=[path], sequence_length=chunk_frames, step=chunk_frames,
                       stride=1, enable_timestamps=True, pad_sequences=True, skip_vfr_check=True,
                       random_shuffle=False, name="video"),
        "resize": dict(resize_x=w, resize_y=h),
        "pipeline": dict(batch_size=1, num_threads=2, device_id=device_id, prefetch_queue_depth=2),
    }


def iter_frames_dali(path: str, fps: float | None, info: MediaInfo, short_side: int = 256, chunk_frames: int = 32,
                     threads: int = 0, device_id: int = 0, **_) -> Iterator[FrameChunk]:  # pragma: no cover - GPU
    from nvidia.dali import fn, pipeline_def

    kw = pipeline_kwargs(path, chunk_frames, short_side, info.width, info.height, device_id)

    @pipeline_def(**kw["pipeline"])
    def pipe():
        frames, ts = fn.readers.video(**kw["reader"])
        return fn.resize(frames, **kw["resize"]), ts

    p = pipe()
    p.build()
    degrees = info.rotation  # DALI ignores the display matrix; PyAV's frames are turned upright
    n_total = p.epoch_size("video")
    seen, last_t = 0, -np.inf
    step = 1.0 / info.fps if info.fps else 1.0 / 25
    while seen < n_total:
        frames_out, ts_out = p.run()
        frames = np.asarray(frames_out.as_cpu().at(0))  # [F, H, W, 3]
        ts = np.asarray(ts_out.as_cpu().at(0), dtype=np.float64)
        seen += chunk_frames
        keep = []
        for i, t in enumerate(ts):
            if t <= last_t:  # padding of the last sequence repeats timestamps
                continue
            t_next = ts[i + 1] if i + 1 < len(ts) and ts[i + 1] > t else t + step
            if on_grid(t, t_next, fps):
                keep.append(i)
            last_t = t
        if keep:
            yield FrameChunk(rotate(np.ascontiguousarray(frames[keep]), degrees), ts[keep])


@register_backend
class DaliBackend:
    name = "dali"
    frames = staticmethod(iter_frames_dali)
    available = staticmethod(available)
