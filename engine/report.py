"""The run report: ``<out>/<split>.report.json`` and the summary table printed at the end of a run."""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from .worker import ItemResult


def write_report(path: Path, split: str, results: list[ItemResult], wall_s: float, extra: dict) -> dict:
    counts = Counter(r.status for r in results)
    report = {
        "split": split,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_s": round(wall_s, 3),
        "counts": dict(counts),
        "media_s": round(sum(r.media_s for r in results), 3),
        "errors": [r.error for r in results if r.error],
        "warnings": {r.id: r.warnings for r in results if r.warnings},
        "items": [asdict(r) for r in sorted(results, key=lambda r: r.id)],
        **extra,
    }
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return report


def summary_table(results: list[ItemResult], max_rows: int = 60, failed_only: bool = False) -> str:
    """Status per item and seconds per modality, as a plain-text table (failures first)."""
    if failed_only:
        results = [r for r in results if r.status == "failed"]
        if not results:
            return ""
    groups = sorted({g for r in results for g in r.seconds})
    head = ["item", "status", "media s", *[f"{g} s" for g in groups], "note"]
    rows = []
    for r in sorted(results, key=lambda r: (r.status != "failed", r.id))[:max_rows]:
        note = r.error or (f"missing: {', '.join(f'{k} ({v})' for k, v in r.missing.items())}" if r.missing else "")
        if not note and r.warnings:
            note = f"{len(r.warnings)} warning(s)"
        rows.append([r.id[:40], r.status, f"{r.media_s:.1f}",
                     *[f"{r.seconds[g]:.2f}" if g in r.seconds else "-" for g in groups], note[:100]])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()  # noqa: E731
    lines = [fmt(head), fmt(["-" * w for w in widths]), *map(fmt, rows)]
    if len(results) > max_rows:
        lines.append(f"... {len(results) - max_rows} more in the report")
    return "\n".join(lines)
