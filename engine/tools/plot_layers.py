"""The bands of the timeline picture, one function each, drawn on the axes :mod:`engine.tools.plot` lays out.

Every function takes plain arrays (seconds, values) and a matplotlib axis, so a band can be drawn and checked
without a store. matplotlib is imported inside the functions: importing the tools stays cheap.
"""
from __future__ import annotations

import numpy as np

from ..labels import BASIC7
from .plot_data import Z_CLIP, bin_rows, mmss, sentence_number_stride, tick_step

# Fixed colours per Basic-7 emotion, so every picture reads the same (colour-blind friendlier than pure hues).
EMOTION_COLOURS = {
    "Anger": "#d62728", "Disgust": "#6b8e23", "Fear": "#7e57c2", "Joy": "#f5c518", "Neutral": "#a6a6a6",
    "Sadness": "#1f63c6", "Surprise": "#ff7fbf",
}
UNLABELLED_COLOUR = "#ffffff"
F0_COLOUR = "#b03a2e"
PRESENCE_COLOUR = "#4a5d70"  # slate, like the sentence spans: a band to read, not a heatmap
_TURNING_STYLE = {"color": "black", "lw": 1.1, "ls": (0, (4, 2))}


def _label_name(k: int) -> str | None:
    return BASIC7[k] if 0 <= k < len(BASIC7) else None


def _band_frame(ax, label: str) -> None:
    ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def draw_sentences(ax, starts: np.ndarray, ends: np.ndarray, duration: float, px_per_s: float) -> None:
    """Sentence segments as alternating grey spans, numbered: each where numbers fit, else every 2nd, 5th, ..."""
    from matplotlib.patches import Rectangle

    stride = sentence_number_stride(len(starts), duration * px_per_s)
    for k, (a, b) in enumerate(zip(starts, ends)):
        ax.add_patch(Rectangle((a, 0), b - a, 1, facecolor="#5f6b7a" if k % 2 else "#8d99a8", lw=0))
        fits = (k + 1) % stride == 0 if stride > 1 else (b - a) * px_per_s > 8 * len(str(k + 1)) + 4
        if fits:
            ax.text((a + b) / 2, 0.5, str(k + 1), ha="center", va="center", fontsize=7, color="white")
    _band_frame(ax, "sentences")


def draw_emotions(ax, starts: np.ndarray, ends: np.ndarray, primary: np.ndarray, px_per_s: float) -> None:
    """The primary emotion of each segment as a coloured span (hatched where unlabelled), named where it fits."""
    from matplotlib.patches import Rectangle

    for k, (a, b) in enumerate(zip(starts, ends)):
        name = _label_name(int(primary[k])) if k < len(primary) else None
        ax.add_patch(Rectangle((a, 0), b - a, 1, lw=0, facecolor=EMOTION_COLOURS.get(name, UNLABELLED_COLOUR),
                               hatch=None if name else "////", edgecolor="#999999"))
        if name and (b - a) * px_per_s > 7 * len(name) + 6:
            ax.text((a + b) / 2, 0.5, name, ha="center", va="center", fontsize=7.5,
                    color="white" if name in ("Anger", "Fear", "Sadness", "Disgust") else "black")
    _band_frame(ax, "emotion")


def draw_heatmap(ax, name: str, attrs: dict, img: np.ndarray, how: str, edges: np.ndarray):
    """One modality's heatmap ``[rows, n_bins]`` of z-scores over the time ``edges``; returns the image."""
    import matplotlib

    masked = np.ma.masked_invalid(img)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#f2f2f2")
    im = ax.imshow(masked, aspect="auto", origin="lower", interpolation="nearest", cmap=cmap,
                   vmin=-Z_CLIP, vmax=Z_CLIP, extent=(edges[0], edges[-1], -0.5, img.shape[0] - 0.5))
    extractor = attrs.get("extractor", "?")
    ax.set_ylabel(f"{name}\n{extractor}\n({how})", rotation=0, ha="right", va="center", fontsize=9)
    cols = attrs.get("columns")
    if cols and len(cols) == img.shape[0] and len(cols) <= 8:
        ax.set_yticks(range(len(cols)), cols, fontsize=6.5)
    else:
        ax.set_yticks([0, img.shape[0] - 1], ["0", str(img.shape[0] - 1)], fontsize=6.5)
    ax.tick_params(axis="y", length=2, pad=1)
    return im


def draw_presence(ax, t: np.ndarray, values: np.ndarray, edges: np.ndarray, label: str):
    """Presence (0..1) over time as a thin band on the heatmaps' time bins: dark where present, white where
    absent, empty where there are no rows. Returns the image."""
    from matplotlib.colors import LinearSegmentedColormap

    img = bin_rows(np.asarray(t, np.float64), np.asarray(values, np.float64)[:, None], edges).T
    cmap = LinearSegmentedColormap.from_list("presence", ["#ffffff", PRESENCE_COLOUR])
    im = ax.imshow(np.ma.masked_invalid(img), aspect="auto", origin="lower", interpolation="nearest",
                   cmap=cmap, vmin=0.0, vmax=1.0, extent=(edges[0], edges[-1], 0, 1))
    _band_frame(ax, label)
    return im


def draw_f0(ax, t: np.ndarray, f0_hz: np.ndarray, label: str):
    """The F0 contour in Hz as a line, broken wherever ``f0_hz`` is NaN (unvoiced). Returns the line."""
    f0_hz = np.asarray(f0_hz, np.float64)
    (line,) = ax.plot(np.asarray(t, np.float64), f0_hz, color=F0_COLOUR, lw=0.8)
    voiced = f0_hz[np.isfinite(f0_hz)]
    lo, hi = (float(voiced.min()), float(voiced.max())) if len(voiced) else (75.0, 400.0)
    pad = max(5.0, 0.08 * (hi - lo))  # some room above and below, even for a flat contour
    ax.set_ylim(max(0.0, lo - pad), hi + pad)
    ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    ax.tick_params(axis="y", labelsize=6.5, length=2, pad=1)
    ax.locator_params(axis="y", nbins=3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return line


def draw_turning_points(axes, tp_times: list[float]) -> None:
    """Turning points as dashed lines through every panel, with a marker above the top one."""
    from matplotlib import patheffects

    outline = [patheffects.withStroke(linewidth=2.6, foreground="white")]
    for ax in axes:
        for t in tp_times:
            ax.axvline(t, **_TURNING_STYLE, path_effects=outline, zorder=5)
    for t in tp_times:
        axes[0].plot([t], [1.0], marker="v", ms=7, color="black", clip_on=False, zorder=6)


def format_time_axis(axes, duration: float) -> None:
    """One ``MM:SS`` axis under the bottom panel, ticks at a round step that suits the film's length."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

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


def add_legend(fig) -> None:
    """The Basic-7 colours, the unlabelled hatch and the turning-point line, in one row under the picture."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=EMOTION_COLOURS[n], label=n) for n in BASIC7]
    handles.append(Patch(facecolor=UNLABELLED_COLOUR, hatch="////", edgecolor="#999999", label="unlabelled"))
    handles.append(Line2D([0], [0], **_TURNING_STYLE, marker="v", ms=6, label="turning point"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8.5, frameon=False,
               bbox_to_anchor=(0.535, 0.0), handlelength=1.6, columnspacing=1.4)
