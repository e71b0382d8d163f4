"""What a run tells its user: the report file ``<out>/<split>.report.json``, the summary table, the dry run."""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import extractors as registry

from .records import ItemResult


def write_report(path: Path, split: str, results: list[ItemResult], wall_s: float, extra: dict,
                 timings=None) -> dict:
    """Write the report atomically (a temporary file renamed over the old one; removed if the write fails)."""
    counts = Counter(r.status for r in results)
    done = [r for r in results if r.status == "ok"]
    compute = sum(v for r in done for k, v in r.seconds.items() if k != "store")
    report = {
        "split": split,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_s": round(wall_s, 3),
        "counts": dict(counts),
        "media_s": round(sum(r.media_s for r in results), 3),
        "by_language": {lang: dict(Counter(r.status for r in results if r.lang == lang))
                        for lang in sorted({r.lang for r in results})},
        "errors": [r.error for r in results if r.error],
        "warnings": {r.id: r.warnings for r in results if r.warnings},
        "items": [asdict(r) for r in sorted(results, key=lambda r: r.id)],
        **extra,
    }
    if timings is not None and done:
        n = len(done)
        report["timings"] = {
            "ray_start_s": round(timings.ray_start_s, 3), "run_s": round(timings.run_s, 3),
            "first_result_s": round(timings.first_result_s or 0.0, 3), "busy_requeues": timings.busy_requeues,
            "first_item_s": round(timings.first_item_s or 0.0, 3),
            "per_item_wall_ms": round(1000 * timings.run_s / n, 2),
            "per_item_compute_ms": round(1000 * compute / n, 2),
            "per_item_store_ms": round(1000 * sum(r.seconds.get("store", 0.0) for r in done) / n, 2),
        }
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str, allow_nan=False),
                       encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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


def print_summary(report: dict, results: list[ItemResult], groups, store_path: Path, report_path: Path,
                  quiet: bool) -> None:
    """The end-of-run lines: the table (failures only with --quiet), counts, rates and the fixed cost per item."""
    table = summary_table(results, failed_only=quiet)  # --quiet still names every failure
    if table:
        print(table)
    c, media, wall = report["counts"], report["media_s"], report["wall_s"]
    print(f"\n{len(results)} item(s): {c.get('ok', 0)} written, {c.get('cached', 0)} cached, "
          f"{c.get('failed', 0)} failed | modalities: " + ", ".join(f"{g.name}={g.spec.name}" for g in groups)
          + f" | media {media:.1f}s in {wall:.1f}s wall ({media / max(wall, 1e-9):.2f} media s per s)")
    if len(report["by_language"]) > 1:
        print("by language: " + "; ".join(f"{lang or '?'}: " + ", ".join(f"{n} {s}" for s, n in sorted(c.items()))
                                          for lang, c in report["by_language"].items()))
    t = report.get("timings")
    if t:
        print(f"per item: {t['per_item_wall_ms']:.1f} ms wall, of which {t['per_item_compute_ms']:.1f} ms decode + "
              f"encode and {t['per_item_store_ms']:.1f} ms writing | Ray start {t['ray_start_s']:.1f}s (beside "
              f"planning), first item published {t['first_item_s']:.1f}s after the command started")
    print(f"store: {store_path}\nreport: {report_path}")


def list_extractors() -> str:
    specs = registry.available()
    rows = [(s.name, s.modality, str(s.dim), f"{s.fps} fps" if s.fps else (f"{s.sample_rate} Hz" if s.sample_rate
            else "per segment"), s.device, s.description) for s in specs.values()]
    head = ("name", "modality", "dim", "input rate", "device", "description")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in [head, *rows])


def dry_run(items, split: str) -> int:
    """List items, media and metadata durations and problems; decode and write nothing."""
    from .decode import probe
    from .errors import ItemError
    bad = 0
    print(f"{'item':40}  {'media s':>8}  {'meta s':>8}  {'segs':>5}  problem")
    for it in items:
        dur, problem = None, it.error.line() if it.error else ""
        if not problem and it.media:
            try:
                dur = probe(it.media).duration_s
            except ItemError as exc:
                exc.item = it.id
                problem = exc.line()
        bad += bool(problem)
        print(f"{it.id[:40]:40}  {dur if dur is not None else float('nan'):8.2f}  "
              f"{it.duration_s if it.duration_s is not None else float('nan'):8.2f}  {len(it.segments):5d}  "
              f"{problem or (it.source + (f'  ({len(it.warnings)} warning(s))' if it.warnings else ''))}")
    print(f"{len(items)} {split} item(s), {bad} with problems")
    return 1 if bad else 0
