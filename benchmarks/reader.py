"""``reader_window_vs_memmap`` and ``reader_scan_vs_memmap``: :class:`engine.reader.StoreReader` vs
``np.load(mmap_mode="r")`` over the same data saved as one ``.npy`` per item and modality.

The store is shaped like EmoS and written directly through the engine's writer (one ``ItemRows`` per film,
``ShardWriter.write`` -> ``publish``: a film is a one-item shard, as the engine writes it), no extraction: visual
``[T, 768]`` at 4 Hz, audio ``[T, 768]`` at 50 Hz, text ``[S, 384]`` one row per ~4 s sentence, float16, film
lengths spread around the mean. The same arrays are
saved as ``.npy`` (features and timestamps); the memmap side keeps timestamps in RAM and finds window rows with
``np.searchsorted``.

- windows: the same random 8 s windows (random item and start) over all modalities, each window's rows copied
  out (what a collate does); both sides open every item once beforehand (the reader caches its item views).
- scans: every row of every item and modality, copied out; each round opens the store afresh
  (a new ``StoreReader``; ``np.load`` of every file), so metadata parsing is part of a scan.

Both sides run on a warm page cache (a full scan of each first), rounds interleaved with alternating order, medians.
"""
from __future__ import annotations

import json
import shutil

import numpy as np

from .common import WORK, Context, Ratio, interleaved, median

RATES = {"visual": 4.0, "audio": 50.0}
DIMS = {"visual": 768, "audio": 768, "text": 384}
WINDOW_S = 8.0


def build(n_items: int, total_s: float, seed: int = 0):
    """Write the store and the ``.npy`` copy (cached under ``benchmarks/.work``); returns (store, npy dir,
    {item: duration})."""
    from engine.store import FeatureStore, ItemRows
    key = {"items": n_items, "total_s": total_s, "seed": seed, "v": 3}  # v3: shards with consolidated metadata
    base = WORK / f"reader-{n_items}x{int(total_s)}s"
    store_path, npy = base / "stream.zarr", base / "npy"
    marker = base / "complete.json"
    if marker.exists() and json.loads(marker.read_text())["key"] == key:
        return store_path, npy, json.loads(marker.read_text())["durations"]
    shutil.rmtree(base, ignore_errors=True)
    rng = np.random.default_rng(seed)
    lengths = rng.uniform(0.4, 1.6, n_items)
    durations = {f"film{k:03d}": float(round(d, 2)) for k, d in enumerate(lengths / lengths.sum() * total_s)}
    store = FeatureStore(base, "stream")
    store.create()
    npy.mkdir(parents=True)
    group_attrs = {g: {"rate_hz": RATES.get(g)} for g in DIMS}
    for item_id, dur in durations.items():
        rows = ItemRows(item_id, {"source": "generated", "duration_s": dur, "groups": list(DIMS)})
        for g in DIMS:
            if g == "text":
                t = np.sort(rng.uniform(0, dur, max(1, int(dur / 4))))
            else:
                t = (np.arange(int(dur * RATES[g])) + 0.5) / RATES[g]
            rows.groups[g] = (rng.standard_normal((len(t), DIMS[g]), dtype=np.float32).astype(np.float16), t)
            np.save(npy / f"{item_id}.{g}.npy", rows.groups[g][0])
            np.save(npy / f"{item_id}.{g}.t.npy", t)
        w = store.stage(item_id)
        w.write([rows], group_attrs, DIMS, pooled=False, dtype="float16")
        w.publish()
    marker.write_text(json.dumps({"key": key, "durations": durations}))
    return store_path, npy, durations


class Memmaps:
    """The baseline: ``np.load(mmap_mode="r")`` per item and modality, timestamps in RAM, ``searchsorted``."""

    def __init__(self, npy_dir, item_ids):
        self.items = {i: {g: (np.load(npy_dir / f"{i}.{g}.t.npy"), np.load(npy_dir / f"{i}.{g}.npy", mmap_mode="r"))
                          for g in DIMS} for i in item_ids}

    def window(self, item_id: str, t0: float, t1: float) -> dict:
        out = {}
        for g, (t, f) in self.items[item_id].items():
            i0, i1 = np.searchsorted(t, t0), np.searchsorted(t, t1)
            out[g] = f[i0:i1]
        return out


def _copy_windows(window_fn, windows) -> int:
    n = 0
    for item_id, t0 in windows:
        for f in window_fn(item_id, t0, t0 + WINDOW_S).values():
            n += np.array(getattr(f, "features", f)).nbytes
    return n


def _scan_reader(store_path) -> int:
    from engine.reader import StoreReader
    r = StoreReader(store_path)
    return sum(np.array(w.features).nbytes for i in r.items() for w in r.window(i, -np.inf, np.inf).values())


def _scan_memmap(npy_dir, item_ids) -> int:
    m = Memmaps(npy_dir, item_ids)
    return sum(np.array(f).nbytes for i in item_ids for f in m.window(i, -np.inf, np.inf).values())


def measure(ctx: Context) -> list[Ratio]:
    from engine.reader import StoreReader
    mode = ctx.mode
    store_path, npy, durations = build(mode.reader_items, mode.reader_total_s)
    ids = sorted(durations)
    rng = np.random.default_rng(1)
    windows = [(i, float(rng.uniform(0, max(0.0, durations[i] - WINDOW_S))))
               for i in rng.choice(ids, mode.reader_windows)]
    reader, mm = StoreReader(store_path), Memmaps(npy, ids)
    sizes = {"reader scan": _scan_reader(store_path), "memmap scan": _scan_memmap(npy, ids)}  # warms the cache
    for i in ids:
        reader.item(i)
    wbytes = {"reader": _copy_windows(reader.window, windows), "memmap": _copy_windows(mm.window, windows)}
    if wbytes["reader"] != wbytes["memmap"] or sizes["reader scan"] != sizes["memmap scan"]:
        raise RuntimeError(f"reader and memmap read different data: windows {wbytes}, scans {sizes}")
    win, win_other = interleaved({"reader": lambda: _copy_windows(reader.window, windows),
                                  "memmap": lambda: _copy_windows(mm.window, windows)}, mode.reader_rounds)
    scan, scan_other = interleaved({"reader": lambda: _scan_reader(store_path),
                                    "memmap": lambda: _scan_memmap(npy, ids)}, mode.reader_rounds)
    wps = {k: len(windows) / median(v) for k, v in win.items()}
    gbs = {k: sizes["reader scan"] / median(v) / 1e9 for k, v in scan.items()}
    shape = (f"{len(ids)} items, {sum(durations.values()) / 3600:.2f} h, {sizes['reader scan'] / 1e9:.2f} GB float16 "
             f"(visual [T,768] 4 Hz, audio [T,768] 50 Hz, text [S,384]); {mode.reader_rounds} interleaved rounds, "
             "medians")
    return [
        Ratio("reader_window_vs_memmap",
              f"StoreReader.window vs np.load(mmap_mode='r') + searchsorted: {len(windows)} random {WINDOW_S:.0f} s "
              "windows over all modalities, rows copied out",
              "reader windows/s", wps["reader"], "memmap windows/s", wps["memmap"], "windows/s",
              wps["reader"] / wps["memmap"], ">= 0.8",
              [shape, f"{wbytes['reader'] / len(windows) / 1024:.0f} KiB per window"], {"seconds": win},
              {"a": win_other, "b": win_other}),
        Ratio("reader_scan_vs_memmap",
              "full sequential scan (every row of every item and modality, store opened afresh each round): "
              "StoreReader vs np.load(mmap_mode='r')",
              "reader GB/s", gbs["reader"], "memmap GB/s", gbs["memmap"], "GB/s", gbs["reader"] / gbs["memmap"],
              ">= 0.8", [shape], {"seconds": scan}, {"a": scan_other, "b": scan_other}),
    ]
