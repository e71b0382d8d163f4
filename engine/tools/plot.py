"""``python -m engine.plot``: one picture of one film of a store, to see at a glance what was extracted.

From top to bottom, on one time axis (MM:SS): the sentence segments as numbered spans, the primary emotion of
each segment as a coloured band (Basic-7, fixed colours, legend below), then one heatmap per modality. Turning
points (``labels/turning_points``, segment indices) are vertical lines through every panel.

Each heatmap shows features standardised per dimension over the film (z-scores, clipped to +-3). Modalities
with more than 64 dimensions are shown as their first principal components (on the standardised features of
this film) so a 1280-d embedding stays readable. Time is aggregated into at most ``max_bins`` bins (mean of the
rows in a bin; a bin without rows shows the latest row, for as long as that row is typical of the modality's
spacing), so a 640 s film costs the same as a 30 s one.

Examples::

    python -m engine.plot emos_features/stream.zarr --item "Harbor Lights"
    python -m engine.plot emos_features/stream.zarr --item "Night Train" --out night.png

>>> from engine.plot import plot_item                                            # doctest: +SKIP
>>> plot_item("emos_features/stream.zarr", "Harbor Lights", "harbor.png")       # doctest: +SKIP
PosixPath('harbor.png')
"""
from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from pathlib import Path

import numpy as np

from ..labels import BASIC7
from ..reader import ItemView, StoreReader

log = logging.getLogger("engine.plot")

# Fixed colours per Basic-7 emotion, so every picture reads the same (colour-blind friendlier than pure hues).
EMOTION_COLOURS = {
    "Anger": "#d62728", "Disgust": "#6b8e23", "Fear": "#7e57c2", "Joy": "#f5c518", "Neutral": "#a6a6a6",
    "Sadness": "#1f63c6", "Surprise": "#ff7fbf",
}
UNLABELLED_COLOUR = "#ffffff"
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


def safe_filename(name: str) -> str:
    """A file name from an item id: word characters, dots and dashes kept, anything else becomes ``_``.

    >>> safe_filename("A Few Good Men / part 2"), safe_filename("../x")
    ('A_Few_Good_Men_part_2', 'x')
    """
    s = re.sub(r"[^\w.-]+", "_", name).strip("._")
    return s or "item"


def standardise(x: np.ndarray) -> np.ndarray:
    """Per-dimension z-scores over the rows (a constant dimension becomes 0)."""
    x = np.asarray(x, dtype=np.float64)
    if not len(x):
        return x
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 1e-8, sd, 1.0)


def bin_rows(t: np.ndarray, x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Rows ``x`` at times ``t`` aggregated into the time bins ``edges`` -> ``[n_bins, D]`` (NaN: nothing to show).

    A bin holds the mean of its rows. A bin without rows shows the latest row before it, if that row is recent
    (within 1.5x the median spacing of the rows: sparse modalities such as one text row per sentence stay
    visible, a gap in the media stays a gap).
    """
    n_bins, d = len(edges) - 1, x.shape[1]
    out = np.full((n_bins, d), np.nan)
    if not len(t):
        return out
    b = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n_bins - 1)
    sums = np.zeros((n_bins, d))
    np.add.at(sums, b, x)
    counts = np.bincount(b, minlength=n_bins)
    has = counts > 0
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
    fit = z[np.linspace(0, n - 1, min(n, max_fit_rows)).round().astype(int)]
    mean = fit.mean(axis=0)
    _u, sv, vt = np.linalg.svd(fit - mean, full_matrices=False)
    k = max(1, min(n_components, int((sv > 1e-6 * sv[0]).sum()) if sv[0] > 0 else 1))
    return standardise((z - mean) @ vt[:k].T), f"{d}-d, {k} PC"


def time_bins(duration_s: float, max_bins: int = MAX_BINS) -> np.ndarray:
    """Edges of the time bins shared by every heatmap of a film: ``max_bins`` of them, none shorter than 10 ms.

    >>> len(time_bins(640.0)) - 1, len(time_bins(3.0)) - 1
    (1000, 300)
    """
    n_bins = int(max(1, min(max_bins, math.ceil(duration_s / BIN_MIN_S - 1e-9))))
    return np.linspace(0.0, max(duration_s, 1e-3), n_bins + 1)


def _modality_image(mod, edges: np.ndarray) -> tuple[np.ndarray, str]:
    t = np.asarray(mod.t, dtype=np.float64)
    n_bins = len(edges) - 1
    z, how = reduce_dims(standardise(np.asarray(mod.features, dtype=np.float64)))
    img = bin_rows(t, z, edges) if len(t) else np.full((n_bins, z.shape[1]), np.nan)
    return np.clip(img.T, -Z_CLIP, Z_CLIP), how


def _label_name(k: int) -> str | None:
    return BASIC7[k] if 0 <= k < len(BASIC7) else None


def plot_item(reader: StoreReader | str | Path, item_id: str, out_path: str | Path, max_bins: int = MAX_BINS,
              dpi: int = 100) -> Path:
    """Draw the timeline of ``item_id`` (see the module docstring) into the PNG ``out_path``; returns its path."""
    # a Figure on an Agg canvas, not pyplot: no global backend switch in the caller's process (a notebook's
    # inline backend stays as it is), and no figure registry to leak into
    import matplotlib
    from matplotlib import patheffects
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    reader = reader if isinstance(reader, StoreReader) else StoreReader(reader)
    item: ItemView = reader.item(item_id)
    seg = item.segments
    starts = np.asarray(seg.get("start", []), dtype=np.float64)
    ends = np.asarray(seg.get("end", []), dtype=np.float64)
    primary = np.asarray(item.labels.get("primary", np.full(len(starts), -1)), dtype=np.int64)
    turning = np.asarray(item.labels.get("turning_points", []), dtype=np.int64)
    last_t = [float(m.t[-1]) for m in item.groups.values() if len(m.t)]
    duration = max([item.duration_s, float(ends.max()) if len(ends) else 0.0, *last_t, 1.0])

    mods = list(item.groups.values())
    edges = time_bins(duration, max_bins)  # one grid for all modalities, so their columns line up
    images = [_modality_image(m, edges) for m in mods]
    # panel heights (inches): two thin bands, then heatmaps sized by their row count
    heights = [0.32, 0.42] + [min(1.9, max(0.75, 0.35 + r.shape[0] * 0.025)) for r, _h in images]
    width, fig_h = 14.0, sum(heights) + 1.2  # inches; 1.2 for title, time axis and legend
    fig = Figure(figsize=(width, fig_h), dpi=dpi)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(len(heights), 2, height_ratios=heights, width_ratios=[1.0, 0.012], hspace=0.12,
                          wspace=0.015, left=0.115, right=0.955, top=1 - 0.4 / fig_h,
                          bottom=0.8 / fig_h)
    axes = [fig.add_subplot(gs[0, 0])]
    axes += [fig.add_subplot(gs[i, 0], sharex=axes[0]) for i in range(1, len(heights))]
    px_per_s = width * 0.83 * dpi / duration

    # sentence segments, numbered: each one where numbers fit, else every 2nd, 5th, 10th, ...
    ax = axes[0]
    stride = sentence_number_stride(len(starts), duration * px_per_s)
    for k, (a, b) in enumerate(zip(starts, ends)):
        ax.add_patch(Rectangle((a, 0), b - a, 1, facecolor="#5f6b7a" if k % 2 else "#8d99a8", lw=0))
        fits = (k + 1) % stride == 0 if stride > 1 else (b - a) * px_per_s > 8 * len(str(k + 1)) + 4
        if fits:
            ax.text((a + b) / 2, 0.5, str(k + 1), ha="center", va="center", fontsize=7, color="white")
    ax.set_ylabel("sentences", rotation=0, ha="right", va="center", fontsize=9)

    # primary emotion per segment
    ax = axes[1]
    for k, (a, b) in enumerate(zip(starts, ends)):
        name = _label_name(int(primary[k])) if k < len(primary) else None
        ax.add_patch(Rectangle((a, 0), b - a, 1, lw=0, facecolor=EMOTION_COLOURS.get(name, UNLABELLED_COLOUR),
                               hatch=None if name else "////", edgecolor="#999999"))
        if name and (b - a) * px_per_s > 7 * len(name) + 6:
            ax.text((a + b) / 2, 0.5, name, ha="center", va="center", fontsize=7.5,
                    color="white" if name in ("Anger", "Fear", "Sadness", "Disgust") else "black")
    ax.set_ylabel("emotion", rotation=0, ha="right", va="center", fontsize=9)
    for ax in axes[:2]:
        ax.set_ylim(0, 1)
        ax.set_yticks([])
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)

    im = None
    for ax, mod, (img, how) in zip(axes[2:], mods, images):
        masked = np.ma.masked_invalid(img)
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#f2f2f2")
        im = ax.imshow(masked, aspect="auto", origin="lower", interpolation="nearest", cmap=cmap,
                       vmin=-Z_CLIP, vmax=Z_CLIP, extent=(edges[0], edges[-1], -0.5, img.shape[0] - 0.5))
        name = mod.attrs.get("extractor", "?")
        ax.set_ylabel(f"{mod.name}\n{name}\n({how})", rotation=0, ha="right", va="center", fontsize=9)
        cols = mod.attrs.get("columns")
        if cols and len(cols) == img.shape[0] and len(cols) <= 8:
            ax.set_yticks(range(len(cols)), cols, fontsize=6.5)
        else:
            ax.set_yticks([0, img.shape[0] - 1], ["0", str(img.shape[0] - 1)], fontsize=6.5)
        ax.tick_params(axis="y", length=2, pad=1)

    # turning points: where the primary emotion changes, through every panel
    tp_times = [float(starts[k]) for k in turning if 0 <= k < len(starts)]
    outline = [patheffects.withStroke(linewidth=2.6, foreground="white")]
    for ax in axes:
        for t in tp_times:
            ax.axvline(t, color="black", lw=1.1, ls=(0, (4, 2)), path_effects=outline, zorder=5)
    for t in tp_times:
        axes[0].plot([t], [1.0], marker="v", ms=7, color="black", clip_on=False, zorder=6)

    step = tick_step(duration)
    last = axes[-1]
    last.set_xlim(0, duration)
    last.xaxis.set_major_locator(MultipleLocator(step))
    last.xaxis.set_major_formatter(FuncFormatter(mmss))
    if step >= 10:
        last.xaxis.set_minor_locator(MultipleLocator(step / 5 if step % 5 == 0 else step / 2))
    last.set_xlabel("time (MM:SS)", fontsize=9)
    for ax in axes[:-1]:
        ax.tick_params(axis="x", which="both", labelbottom=False)
    for ax in axes:
        ax.tick_params(axis="x", labelsize=8)

    if im is not None:
        cax = fig.add_subplot(gs[2:, 1])
        cb = fig.colorbar(im, cax=cax)
        cb.set_label("z-score (per dimension)", fontsize=8)
        cb.ax.tick_params(labelsize=7)

    handles = [Patch(facecolor=EMOTION_COLOURS[n], label=n) for n in BASIC7]
    handles.append(Patch(facecolor=UNLABELLED_COLOUR, hatch="////", edgecolor="#999999", label="unlabelled"))
    handles.append(Line2D([0], [0], color="black", lw=1.1, ls=(0, (4, 2)), marker="v", ms=6,
                          label="turning point"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8.5, frameon=False,
               bbox_to_anchor=(0.535, 0.0), handlelength=1.6, columnspacing=1.4)
    n_lab = int((primary >= 0).sum())
    fig.suptitle(f"{item.id}  —  {mmss(duration)}, {len(starts)} sentences ({n_lab} labelled), "
                 f"{len(tp_times)} turning points" + (f", lang {item.lang}" if item.lang else ""),
                 fontsize=11, x=0.535, y=1 - 0.1 / fig_h, va="top")

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, format="png")
    log.info("%s: timeline written to %s", item.id, out)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.plot", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", help="a feature store, <out>/<split>.zarr")
    p.add_argument("--item", required=True, help="the item (film) id, as listed in the store")
    p.add_argument("--out", help="PNG to write (default: ./<item>.png, with the name made file-safe)")
    p.add_argument("--max-bins", type=int, default=MAX_BINS, help=f"time bins per heatmap (default {MAX_BINS})")
    p.add_argument("--dpi", type=int, default=100)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        reader = StoreReader(args.store)
    except FileNotFoundError as exc:
        log.error("%s", exc)
        return 2
    if args.item not in reader.items():
        log.error("%r: no complete item of that name in %s; items: %s", args.item, args.store,
                  ", ".join(reader.items()) or "(none)")
        return 2
    out = Path(args.out) if args.out else Path.cwd() / f"{safe_filename(args.item)}.png"
    path = plot_item(reader, args.item, out, max_bins=args.max_bins, dpi=args.dpi)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
