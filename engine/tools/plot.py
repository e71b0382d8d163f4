"""``python -m engine.plot``: one picture of one film of a store, to see at a glance what was extracted.

From top to bottom, on one time axis (MM:SS): the sentence segments as numbered spans, the primary emotion of
each segment as a coloured band (Basic-7, fixed colours, legend below), then one heatmap per modality. Turning
points (``labels/turning_points``, segment indices) are vertical lines through every panel.

Emotion features get rows of their own above the heatmaps when the store has them, found by a group's
``columns`` attribute whatever the group is called: face presence as a thin band (first column ``present...``)
and the F0 contour in Hz, broken where unvoiced (an ``f0_hz`` column).

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
import re
import sys
from pathlib import Path

import numpy as np

from ..reader import ItemView, StoreReader
from .plot_data import (BIN_MIN_S, MAX_BINS, MAX_ROWS, N_COMPONENTS, Z_CLIP, bin_rows, feature_rows, mmss,
                        modality_image, reduce_dims, sentence_number_stride, standardise, tick_step, time_bins)
from .plot_layers import (EMOTION_COLOURS, UNLABELLED_COLOUR, add_legend, draw_emotions, draw_f0, draw_heatmap,
                          draw_presence, draw_sentences, draw_turning_points, format_time_axis)

__all__ = ["BIN_MIN_S", "EMOTION_COLOURS", "MAX_BINS", "MAX_ROWS", "N_COMPONENTS", "UNLABELLED_COLOUR", "Z_CLIP",
           "bin_rows", "build_parser", "draw_item", "feature_rows", "main", "mmss", "plot_item", "reduce_dims",
           "safe_filename", "sentence_number_stride", "standardise", "tick_step", "time_bins"]

log = logging.getLogger("engine.plot")
ROW_HEIGHTS_IN = {"presence": 0.22, "f0": 0.8}  # optional emotion-feature rows, between the bands and heatmaps


def safe_filename(name: str) -> str:
    """A file name from an item id: word characters, dots and dashes kept, anything else becomes ``_``.

    >>> safe_filename("A Few Good Men / part 2"), safe_filename("../x")
    ('A_Few_Good_Men_part_2', 'x')
    """
    s = re.sub(r"[^\w.-]+", "_", name).strip("._")
    return s or "item"


def plot_item(reader: StoreReader | str | Path, item_id: str, out_path: str | Path, max_bins: int = MAX_BINS,
              dpi: int = 100) -> Path:
    """Draw the timeline of ``item_id`` (see the module docstring) into the PNG ``out_path``; returns its path."""
    reader = reader if isinstance(reader, StoreReader) else StoreReader(reader)
    return draw_item(reader.item(item_id), out_path, max_bins=max_bins, dpi=dpi)


def draw_item(item: ItemView, out_path: str | Path, max_bins: int = MAX_BINS, dpi: int = 100) -> Path:
    """Draw the timeline of one item view into the PNG ``out_path``; returns its path.

    ``item`` needs what :class:`engine.reader.ItemView` offers: ``id``, ``duration_s``, ``segments``, ``labels``
    and ``groups`` (name -> ``.t``, ``.features``, ``.attrs``); ``lang`` is shown when present. Groups that carry
    face presence or F0 (see :func:`~engine.tools.plot_data.feature_rows`) also get a row of their own.
    """
    # a Figure on an Agg canvas, not pyplot: no global backend switch in the caller's process (a notebook's
    # inline backend stays as it is), and no figure registry to leak into
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    seg = item.segments
    starts = np.asarray(seg.get("start", []), dtype=np.float64)
    ends = np.asarray(seg.get("end", []), dtype=np.float64)
    primary = np.asarray(item.labels.get("primary", np.full(len(starts), -1)), dtype=np.int64)
    turning = np.asarray(item.labels.get("turning_points", []), dtype=np.int64)
    last_t = [float(m.t[-1]) for m in item.groups.values() if len(m.t)]
    duration = max([item.duration_s, float(ends.max()) if len(ends) else 0.0, *last_t, 1.0])

    mods = list(item.groups.items())
    edges = time_bins(duration, max_bins)  # one grid for all modalities, so their columns line up
    images = [modality_image(m, edges) for _name, m in mods]
    rows = feature_rows(item.groups)
    # panel heights (inches): two thin bands, the emotion-feature rows, then heatmaps sized by their row count
    heights = [0.32, 0.42] + [ROW_HEIGHTS_IN[r.kind] for r in rows]
    heights += [min(1.9, max(0.75, 0.35 + r.shape[0] * 0.025)) for r, _h in images]
    first_map = 2 + len(rows)
    width, fig_h = 14.0, sum(heights) + 1.2  # inches; 1.2 for title, time axis and legend
    fig = Figure(figsize=(width, fig_h), dpi=dpi)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(len(heights), 2, height_ratios=heights, width_ratios=[1.0, 0.012], hspace=0.12,
                          wspace=0.015, left=0.115, right=0.955, top=1 - 0.4 / fig_h,
                          bottom=0.8 / fig_h)
    axes = [fig.add_subplot(gs[0, 0])]
    axes += [fig.add_subplot(gs[i, 0], sharex=axes[0]) for i in range(1, len(heights))]
    px_per_s = width * 0.83 * dpi / duration

    draw_sentences(axes[0], starts, ends, duration, px_per_s)
    draw_emotions(axes[1], starts, ends, primary, px_per_s)
    for ax, row in zip(axes[2:first_map], rows):
        if row.kind == "presence":
            draw_presence(ax, row.t, row.values, edges, f"{row.group}\npresence")
        else:
            draw_f0(ax, row.t, row.values, f"{row.group}\nF0 (Hz)")
    im = None
    for ax, (name, mod), (img, how) in zip(axes[first_map:], mods, images):
        im = draw_heatmap(ax, name, mod.attrs, img, how, edges)
    # turning points: where the primary emotion changes, through every panel
    tp_times = [float(starts[k]) for k in turning if 0 <= k < len(starts)]
    draw_turning_points(axes, tp_times)
    format_time_axis(axes, duration)

    if im is not None:
        cax = fig.add_subplot(gs[first_map:, 1])
        cb = fig.colorbar(im, cax=cax)
        cb.set_label("z-score (per dimension)", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    add_legend(fig)
    n_lab = int((primary >= 0).sum())
    lang = getattr(item, "lang", "")
    fig.suptitle(f"{item.id}  —  {mmss(duration)}, {len(starts)} sentences ({n_lab} labelled), "
                 f"{len(tp_times)} turning points" + (f", lang {lang}" if lang else ""),
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
