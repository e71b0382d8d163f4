"""``python -m engine.plot``: the timeline picture of one film; the code lives in :mod:`engine.tools.plot`.

This module keeps the documented entry point and the names callers import from it.
"""
from __future__ import annotations

import sys

from .tools.plot import (BIN_MIN_S, EMOTION_COLOURS, MAX_BINS, MAX_ROWS, N_COMPONENTS, UNLABELLED_COLOUR, Z_CLIP,
                         bin_rows, build_parser, draw_item, feature_rows, main, mmss, plot_item, reduce_dims,
                         safe_filename, sentence_number_stride, standardise, tick_step, time_bins)

__all__ = ["BIN_MIN_S", "EMOTION_COLOURS", "MAX_BINS", "MAX_ROWS", "N_COMPONENTS", "UNLABELLED_COLOUR", "Z_CLIP",
           "bin_rows", "build_parser", "draw_item", "feature_rows", "main", "mmss", "plot_item", "reduce_dims",
           "safe_filename", "sentence_number_stride", "standardise", "tick_step", "time_bins"]

if __name__ == "__main__":
    sys.exit(main())
