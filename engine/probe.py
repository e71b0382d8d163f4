"""``python -m engine.probe``: the linear probe of a store's features; the code lives in :mod:`engine.tools.probe`.

This module keeps the documented entry point and the names callers import from it.
"""
from __future__ import annotations

import sys

from .tools.probe import (SPLIT_MODES, build_parser, classification_metrics, format_report, load_segments, main,
                          run_probe, split_items, turning_point_scores)

__all__ = ["SPLIT_MODES", "build_parser", "classification_metrics", "format_report", "load_segments", "main",
           "run_probe", "split_items", "turning_point_scores"]

if __name__ == "__main__":
    sys.exit(main())
