"""What the timeline picture shows, computed without drawing: time bins, z-scores, principal components, ticks.

Pure numpy, so each step can be checked on arrays; :mod:`engine.tools.plot_layers` draws the results.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np

MAX_BINS = 1000      # time bins of a heatmap, whatever the film's length
BIN_MIN_S = 0.01     # no finer than a 10 ms log-mel hop
MAX_ROWS = 64        # heatmap rows per modality; more dimensions are reduced to principal components
N_COMPONENTS = 32    # principal components shown for a modality wider than MAX_ROWS
Z_CLIP = 3.0
_TICK_STEPS_S = (1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600)


def mmss(t: float, _pos=None) -> str:
    """Seconds as ``MM:SS`` (``H:MM:SS`` from one hour).

    >>> mmss(75.4), mmss(3725)
    ('01:15', '1:02:05')
    """
    t = int(round(max(0.0, float(t))))
    h, rem = divmod(t, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60:02d}:{rem % 60:02d}"


def tick_step(duration_s: float, max_ticks: int = 12) -> int:
    """Seconds between major time ticks: the smallest round step giving at most ``max_ticks`` ticks.

    >>> tick_step(30), tick_step(640)
    (5, 60)
    """
    for step in _TICK_STEPS_S:
        if duration_s / step <= max_ticks:
            return step
    return _TICK_STEPS_S[-1] * math.ceil(duration_s / (_TICK_STEPS_S[-1] * max_ticks))


def sentence_number_stride(n_sentences: int, width_px: float) -> int:
    """Number every how many sentences so that the numbers do not run into each other.

    >>> sentence_number_stride(7, 1100), sentence_number_stride(84, 1100), sentence_number_stride(400, 1100)
    (1, 2, 20)
    """
    need_px = 8 * len(str(max(1, n_sentences))) + 8
    for stride in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000):
        if width_px / max(1, n_sentences) * stride >= need_px:
            return stride
    return 1000


def standardise(x: np.ndarray) -> np.ndarray:
    """Per-dimension z-scores over the rows (a constant dimension becomes 0; NaN stays NaN).

    >>> standardise(np.array([[1.0], [np.nan], [3.0]])).ravel().tolist()
    [-1.0, nan, 1.0]
    """
    x = np.asarray(x, dtype=np.float64)
    if not len(x):
        return x
    if np.isnan(x).any():
        # rows without a value (no face in the frame, unvoiced speech) must not turn the whole dimension into NaN
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a dimension that is NaN throughout: mean of nothing
            mean, sd = np.nan_to_num(np.nanmean(x, axis=0)), np.nan_to_num(np.nanstd(x, axis=0))
        return (x - mean) / np.where(sd > 1e-8, sd, 1.0)
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 1e-8, sd, 1.0)


def bin_rows(t: np.ndarray, x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Rows ``x`` at times ``t`` aggregated into the time bins ``edges`` -> ``[n_bins, D]`` (NaN: nothing to show).

    A bin holds the mean of its rows. A bin without rows shows the latest row before it, if that row is recent
    (within 1.5x the median spacing of the rows: sparse modalities such as one text row per sentence stay
    visible, a gap in the media stays a gap). NaN values are left out of a bin's mean.
    """
    n_bins, d = len(edges) - 1, x.shape[1]
    out = np.full((n_bins, d), np.nan)
    if not len(t):
        return out
    b = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n_bins - 1)
    sums = np.zeros((n_bins, d))
    counts = np.bincount(b, minlength=n_bins)
    has = counts > 0
    missing = np.isnan(x)
    if missing.any():  # a bin's mean over the rows that have a value, per dimension; NaN where none has
        np.add.at(sums, b, np.where(missing, 0.0, x))
        valued = np.zeros((n_bins, d))
        np.add.at(valued, b, ~missing)
        out[has] = np.where(valued[has] > 0, sums[has] / np.maximum(valued[has], 1.0), np.nan)
    else:
        np.add.at(sums, b, x)
        out[has] = sums[has] / counts[has, None]
    hold_s = 1.5 * float(np.median(np.diff(t))) if len(t) > 1 else float(edges[-1] - edges[0])
    centres = 0.5 * (edges[:-1] + edges[1:])
    prev = np.searchsorted(t, centres, side="right") - 1
    fill = ~has & (prev >= 0)
    fill &= centres - t[np.maximum(prev, 0)] <= max(hold_s, edges[1] - edges[0])
    out[fill] = x[prev[fill]]
    return out


def reduce_dims(z: np.ndarray, max_rows: int = MAX_ROWS, n_components: int = N_COMPONENTS,
                max_fit_rows: int = 4000) -> tuple[np.ndarray, str]:
    """Standardised rows ``[n, D]`` -> at most ``max_rows`` columns, and how they were made.

    D <= max_rows: unchanged. Wider: the leading principal components (at most ``n_components``, and no more
    than the rows have non-negligible directions), each scaled to unit variance so weak components are not
    washed out. The basis is fitted on at most ``max_fit_rows`` rows, evenly spaced in time.

    >>> z = np.random.default_rng(0).normal(size=(5, 300))
    >>> [(a.shape, how) for a, how in [reduce_dims(z[:, :40]), reduce_dims(z)]]
    [((5, 40), '40-d'), ((5, 4), '300-d, 4 PC')]
    """
    n, d = z.shape
    if d <= max_rows:
        return z, f"{d}-d"
    if n < 2:
        return np.zeros((n, 1)), f"{d}-d, 1 PC"
    empty = np.isnan(z).all(axis=1)
    if np.isnan(z).any():
        z = np.nan_to_num(z)  # a missing value counts as the film's mean (z = 0): the SVD takes no NaN
    fit = z[np.linspace(0, n - 1, min(n, max_fit_rows)).round().astype(int)]
    mean = fit.mean(axis=0)
    _u, sv, vt = np.linalg.svd(fit - mean, full_matrices=False)
    k = max(1, min(n_components, int((sv > 1e-6 * sv[0]).sum()) if sv[0] > 0 else 1))
    out = standardise((z - mean) @ vt[:k].T)
    out[empty] = np.nan  # a row with no value at all stays a gap rather than a made-up point
    return out, f"{d}-d, {k} PC"


def time_bins(duration_s: float, max_bins: int = MAX_BINS) -> np.ndarray:
    """Edges of the time bins shared by every heatmap of a film: ``max_bins`` of them, none shorter than 10 ms.

    >>> len(time_bins(640.0)) - 1, len(time_bins(3.0)) - 1
    (1000, 300)
    """
    n_bins = int(max(1, min(max_bins, math.ceil(duration_s / BIN_MIN_S - 1e-9))))
    return np.linspace(0.0, max(duration_s, 1e-3), n_bins + 1)


def modality_image(mod, edges: np.ndarray) -> tuple[np.ndarray, str]:
    """A modality (``.t``, ``.features``) as a heatmap ``[rows, n_bins]`` of clipped z-scores, and its row note."""
    t = np.asarray(mod.t, dtype=np.float64)
    n_bins = len(edges) - 1
    z, how = reduce_dims(standardise(np.asarray(mod.features, dtype=np.float64)))
    img = bin_rows(t, z, edges) if len(t) else np.full((n_bins, z.shape[1]), np.nan)
    return np.clip(img.T, -Z_CLIP, Z_CLIP), how


class FeatureRow(NamedTuple):
    """An optional row of the picture: one emotion feature of one group over time."""
    kind: str           # "presence" (0..1, drawn as a thin band) or "f0" (Hz, drawn as a contour)
    group: str
    t: np.ndarray       # [n] seconds
    values: np.ndarray  # [n] float64; NaN where there is nothing to show


def feature_rows(groups: dict) -> list[FeatureRow]:
    """The emotion-feature rows a store's groups offer, found by their ``columns`` attribute, not their name.

    A group whose first column starts with ``present`` gives a face-presence row; one with an ``f0_hz`` column
    gives a pitch row, where values that are not a positive frequency (unvoiced) become NaN.

    >>> from types import SimpleNamespace as G
    >>> g = {"cam": G(t=np.arange(2.0), features=np.array([[1, 5], [0, 6]]), attrs={"columns": ["present", "x"]}),
    ...      "voice": G(t=np.arange(2.0), features=np.array([[0.0], [210.0]]), attrs={"columns": ["f0_hz"]})}
    >>> [(r.kind, r.group, r.values.tolist()) for r in feature_rows(g)]
    [('presence', 'cam', [1.0, 0.0]), ('f0', 'voice', [nan, 210.0])]
    """
    rows = []
    for name, mod in groups.items():
        cols = [str(c) for c in (mod.attrs.get("columns") or [])]
        if not cols or not len(mod.t):
            continue
        t = np.asarray(mod.t, dtype=np.float64)
        x = np.asarray(mod.features, dtype=np.float64).reshape(len(t), -1)
        if cols[0].startswith("present"):
            rows.append(FeatureRow("presence", name, t, x[:, 0]))
        if "f0_hz" in cols:
            f0 = x[:, cols.index("f0_hz")]
            with np.errstate(invalid="ignore"):
                rows.append(FeatureRow("f0", name, t, np.where(np.isfinite(f0) & (f0 > 0), f0, np.nan)))
    return rows
