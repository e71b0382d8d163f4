"""``python -m engine.inspect STORE [--verify]``: items, modalities, shapes, rates, completeness, size on disk.

Reads only ``zarr.json`` files and file sizes (instant on a store of any size); ``--verify`` also reads every
chunk file and compares it with the digest written when its shard was published (a full content check).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import StoreError
from ..fingerprint import file_blake2b
from ..store import layout as L
from ..store.writer import FeatureStore, check_shard
from ..store.zarrjson import read_attrs, read_meta


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except FileNotFoundError:
                pass
    return total


def verify_shard(path: Path, attrs: dict) -> list[str]:
    """Every chunk file against its digest from publish time: one line per difference (empty: intact)."""
    bad = []
    for rel, want in sorted(attrs.get(L.DIGESTS, {}).items()):
        f = path / rel
        if not f.is_file():
            bad.append(f"{f}: chunk file is missing")
        elif file_blake2b(str(f)) != want:
            bad.append(f"{f}: content differs from what was published (digest mismatch)")
    return bad


def inspect_store(path: str | Path, verify: bool = False) -> dict:
    """A summary of the store as plain data (what the CLI prints)."""
    path = Path(path)
    root = read_attrs(path)
    if root is None:
        raise FileNotFoundError(f"{path} is not a feature store (no zarr.json)")
    store = FeatureStore(path.parent, path.name[:-5])
    items, groups, shards, problems = [], {}, [], []
    for key, sp in sorted(store.shards().items()):
        try:
            attrs = read_attrs(sp) or {}
        except StoreError as exc:
            problems.append(str(exc))
            continue
        damage = check_shard(sp, attrs)
        if damage:
            problems.append(damage)
        if verify:
            problems += verify_shard(sp, attrs)
        shards.append({"key": key, "path": sp.name, "items": len(attrs.get(L.ITEM_IDS, [])), "bytes": _size(sp),
                       "files": sum(len(f) for _, _, f in os.walk(sp))})
        for g in attrs.get(L.GROUPS, []):
            ga = read_attrs(sp / g) or {}
            shape = (read_meta(sp / g / L.FEATURES) or {}).get("shape", [0, 0])
            info = groups.setdefault(g, {"extractor": ga.get("extractor"), "model": ga.get("model"),
                                         "dim": ga.get("dim"), "rate_hz": ga.get("rate_hz"), "rows": 0, "items": 0,
                                         "columns": ga.get("columns")})
            info["rows"] += shape[0]
        for iid in attrs.get(L.ITEM_IDS, []):
            a = attrs.get(L.ITEM_ATTRS, {}).get(iid, {})
            for g in a.get("groups", []):
                if g in groups:
                    groups[g]["items"] += 1
            items.append({"id": iid, "shard": key, "duration_s": a.get("duration_s"), "lang": a.get("lang"),
                          "groups": a.get("groups", []), "missing": a.get("missing", {})})
    staging = path.parent / L.PRIVATE / "staging" / root.get("split", "")
    return {"store": str(path), "split": root.get("split"), "format": root.get("emos_store_format"),
            "items": sorted(items, key=lambda i: i["id"]), "groups": groups, "shards": shards,
            "bytes": _size(path), "files": sum(len(f) for _, _, f in os.walk(path)), "problems": problems,
            "staging_leftovers": len(list(staging.iterdir())) if staging.is_dir() else 0}


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.inspect", description=__doc__)
    p.add_argument("store", help="path to <out>/<split>.zarr")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--verify", action="store_true", help="read every chunk and check it against its digest")
    p.add_argument("--items", action="store_true", help="list every item (default: the first 40)")
    args = p.parse_args(argv)
    try:
        s = inspect_store(args.store, verify=args.verify)
    except (FileNotFoundError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(s, indent=2, ensure_ascii=False))
        return 1 if s["problems"] else 0
    print(f"{s['store']}  split={s['split']}  format={s['format']}  {_human(s['bytes'])} in {s['files']} files")
    print(f"items: {len(s['items'])} in {len(s['shards'])} shard(s)"
          + (f", {s['staging_leftovers']} staging leftover(s)" if s["staging_leftovers"] else ""))
    print("\nmodality  extractor            dim    rate    items  rows      model")
    for g, i in s["groups"].items():
        rate = f"{i['rate_hz']:g} Hz" if i["rate_hz"] else "per seg"
        print(f"{g:9} {str(i['extractor']):20} {str(i['dim']):6} {rate:7} {i['items']:6} {i['rows']:<9} "
              f"{str(i['model'])[:60]}")
    print("\nitem                                      dur s   lang  modalities")
    shown = s["items"] if args.items else s["items"][:40]
    for it in shown:
        dur = f"{it['duration_s']:.1f}" if it["duration_s"] is not None else "-"
        extra = ("  missing: " + ", ".join(it["missing"])) if it["missing"] else ""
        print(f"{it['id'][:40]:41} {dur:7} {str(it['lang']):5} {' '.join(it['groups'])}{extra}")
    if len(shown) < len(s["items"]):
        print(f"... {len(s['items']) - len(shown)} more (--items lists all)")
    for line in s["problems"]:
        print(f"DAMAGED: {line}")
    if args.verify and not s["problems"]:
        print("\nverify: every chunk matches its digest")
    return 1 if s["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
