"""``python -m engine.inspect STORE``: items, modalities, shapes, rates, completeness and size on disk.

Reads only ``zarr.json`` files and directory sizes: instant on a store of any size.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .store import PRIVATE, read_attrs


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except FileNotFoundError:
                pass
    return total


def _shape(arr: Path) -> list[int] | None:
    try:
        with open(arr / "zarr.json", encoding="utf-8") as fh:
            return json.load(fh)["shape"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return None


def inspect_store(path: str | Path) -> dict:
    """A summary of the store as plain data (what the CLI prints)."""
    path = Path(path)
    root = read_attrs(path)
    if root is None:
        raise FileNotFoundError(f"{path} is not a feature store (no zarr.json)")
    items, groups = [], {}
    for p in sorted(q for q in path.iterdir() if q.is_dir()):
        a = read_attrs(p) or {}
        row = {"id": p.name, "complete": a.get("complete") is True, "duration_s": a.get("duration_s"),
               "lang": a.get("lang"), "missing": a.get("missing", {}), "bytes": _size(p), "modalities": {}}
        for g in a.get("groups", []):
            ga = read_attrs(p / g) or {}
            row["modalities"][g] = _shape(p / g / "features")
            info = groups.setdefault(g, {"extractor": ga.get("extractor"), "model": ga.get("model"),
                                         "dim": ga.get("dim"), "rate_hz": ga.get("rate_hz"), "rows": 0, "items": 0})
            info["rows"] += (row["modalities"][g] or [0])[0]
            info["items"] += 1
        seg = _shape(p / "segments" / "start")
        row["segments"] = seg[0] if seg else 0
        items.append(row)
    staging = path.parent / PRIVATE / "staging" / root.get("split", "")
    return {"store": str(path), "split": root.get("split"), "format": root.get("emos_store_format"),
            "items": items, "groups": groups, "bytes": _size(path),
            "complete": sum(i["complete"] for i in items), "incomplete": sum(not i["complete"] for i in items),
            "staging_leftovers": len(list(staging.iterdir())) if staging.is_dir() else 0}


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.inspect", description=__doc__)
    p.add_argument("store", help="path to <out>/<split>.zarr")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    try:
        s = inspect_store(args.store)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(s, indent=2, ensure_ascii=False))
        return 0
    print(f"{s['store']}  split={s['split']}  format={s['format']}  {_human(s['bytes'])}")
    print(f"items: {len(s['items'])} ({s['complete']} complete, {s['incomplete']} incomplete)"
          + (f", {s['staging_leftovers']} staging leftover(s)" if s["staging_leftovers"] else ""))
    print("\nmodality  extractor            dim    rate    items  rows      model")
    for g, i in s["groups"].items():
        rate = f"{i['rate_hz']:g} Hz" if i["rate_hz"] else "per seg"
        print(f"{g:9} {str(i['extractor']):20} {str(i['dim']):6} {rate:7} {i['items']:6} {i['rows']:<9} "
              f"{str(i['model'])[:60]}")
    print("\nitem                                      done  dur s   lang  segs  size      shapes")
    for it in s["items"]:
        shapes = " ".join(f"{g}={'x'.join(map(str, sh or []))}" for g, sh in it["modalities"].items())
        if it["missing"]:
            shapes += "  missing: " + ", ".join(it["missing"])
        dur = f"{it['duration_s']:.1f}" if it["duration_s"] is not None else "-"
        print(f"{it['id'][:40]:41} {'yes' if it['complete'] else 'NO':5} {dur:7} {str(it['lang']):5} "
              f"{it['segments']:<5} {_human(it['bytes']):9} {shapes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
