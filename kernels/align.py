"""Time <-> index conversion: the one place where seconds become rows and rows become seconds.

Conventions: times are float64 seconds from clip start; a window ``[t0, t1)`` holds the rows with
``t0 <= t < t1``; a frame-based feature's time is the centre of its analysis window.
"""
from __future__ import annotations

import math

import numpy as np

EPS = 1e-6  # seconds; absorbs float rounding of pts * time_base


def frame_centres(n_frames: int, hop_s: float, win_s: float, offset_s: float = 0.0) -> np.ndarray:
    """Centre times of ``n_frames`` analysis frames with hop ``hop_s`` and window ``win_s``.

    >>> frame_centres(3, 0.010, 0.025).round(4).tolist()
    [0.0125, 0.0225, 0.0325]
    """
    return offset_s + np.arange(n_frames, dtype=np.float64) * hop_s + win_s / 2.0


def n_frames(n_samples: int, sample_rate: int, hop_s: float, win_s: float) -> int:
    """Frames of a non-centred framing (each frame lies wholly inside the signal)."""
    win, hop = round(win_s * sample_rate), round(hop_s * sample_rate)
    return 0 if n_samples < win else 1 + (n_samples - win) // hop


def window_rows(t: np.ndarray, t0: float, t1: float) -> tuple[int, int]:
    """Row range ``[i0, i1)`` of the rows whose time lies in ``[t0, t1)``; ``t`` must be sorted.

    >>> window_rows(np.array([0.0, 0.5, 1.0, 1.5]), 0.5, 1.5)
    (1, 3)
    """
    i0 = int(np.searchsorted(t, t0, side="left"))
    i1 = int(np.searchsorted(t, t1, side="left"))
    return i0, max(i0, i1)


def on_grid(t_s: float, t_next_s: float, fps: float | None) -> bool:
    """Whether a frame shown during ``[t_s, t_next_s)`` is the one on screen at some grid time ``k / fps``.

    The sampled frame for grid time g is the last frame whose presentation time is <= g, so a frame is kept when
    its display interval contains a grid point. Each frame is kept at most once, which makes the rule correct for
    variable frame rate and for streams whose first timestamp is not zero. ``fps`` None or 0 keeps every frame.

    >>> [on_grid(i / 25, (i + 1) / 25, 5) for i in range(6)]
    [True, False, False, False, False, True]
    """
    if not fps:
        return t_next_s > 0.0 or t_s >= 0.0
    k = math.ceil(t_s * fps - EPS * fps)
    k = max(k, 0)
    return k / fps < t_next_s - EPS


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    """Length of the overlap of ``[a0, a1)`` and ``[b0, b1)`` in seconds (0 when disjoint)."""
    return max(0.0, min(a1, b1) - max(a0, b0))
