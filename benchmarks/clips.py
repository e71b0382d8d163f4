"""Short clips at scale: the static split (MELD-Core, CH-SIMS v2), thousands of utterances of a few seconds.

- ``clips_vs_plain``: ``python -m engine.extract --split static`` (a fresh process, Ray start-up and shutdown
  included, as a user runs it) vs the plain loop on the same generated checkout with the same extractors
  (``frame_stats,logmel,e5_small``): one process, clip after clip, PyAV decode (frames on the visual extractor's
  grid, converted to RGB at native size; audio resampled to 16 kHz in one call), the registry's extractors
  (``extractors.create(get_spec(name))``), ``np.save`` of features and times per clip and group. Both are timed as
  whole processes (interpreter start and imports included); the plain loop reads the same tables through the
  engine's discovery. Ratio = engine clips/s over plain clips/s. The features of both are compared row by row.
- ``clips_open_dataset_s``: ``open_store`` + ``WindowDataset(store, by="segment", pool=True)`` over a packed store
  of 9,400 clips (random features of the real shapes: visual 4-d at 4 Hz, audio 64-d at 100 Hz, text 384-d,
  2.4 s clips, 1,000 to a shard, float32, written by ``ShardWriter``): seconds in a fresh process (its first open;
  the page cache cannot be dropped here, so the files are warm) and warm (again in this process). Not a ratio.
- ``clips_item_vs_memmap``: every clip once in a shuffled order through the public reader
  (``store.item(id).groups[g].features`` for every group, copied with ``np.array``) vs a plain loop over
  ``np.load(mmap_mode="r")`` of the same packed arrays with their offsets in RAM, same ids, same order.
- ``clips_dataset_vs_memmap``: ``ds[i]`` of that ``WindowDataset`` over the same shuffled clips vs the same loop.
- ``clips_files_per_1000`` and ``clips_disk_vs_data``: the engine's store of the extraction above: files per 1,000
  clips, and bytes on disk (allocated blocks) over the bytes of the features, times and labels it holds.

Read rounds are interleaved with alternating order, medians; the page cache is warmed by a first pass.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .clipdata import DIMS, clip_corpus, packed_store
from .common import CHEAP, Context, OtherWork, Ratio, interleaved, median, run_child
from .sequential import _grid, compare

PACKED_CLIPS = 9400


# ------------------------------------------------------------------------------------------------ extraction
def _decode(path: str, sample_rate: int):
    """All frames decoded (kept as decoded frames, not converted), their times, and the audio at ``sample_rate``."""
    import av
    import torch
    import torchaudio
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        frames = list(c.decode(s))
        times = np.array([f.pts * float(s.time_base) for f in frames])
    with av.open(path) as c:
        s = c.streams.audio[0]
        x = torch.from_numpy(np.concatenate([f.to_ndarray() for f in c.decode(s)], axis=1).mean(axis=0))
        wave = torchaudio.functional.resample(x, s.codec_context.sample_rate, sample_rate).numpy()
    return frames, times, wave


def plain_loop(root: str, out: str, names: str) -> dict:
    """The baseline, in a fresh process (:mod:`benchmarks.child`)."""
    t_start = time.perf_counter()
    import extractors as registry
    from engine.config import load_config
    from engine.datasets import discover
    out_dir = Path(out)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    items = [it for it in discover("static", Path(root), load_config()) if it.error is None]
    models = {}
    for name in names.split(","):
        models[name] = registry.create(registry.get_spec(name))
        models[name].setup()
    spent = {"decode": 0.0, **{n: 0.0 for n in models}, "save": 0.0}
    t_loaded = time.perf_counter()
    for it in items:
        t0 = time.perf_counter()
        frames, times, wave = _decode(it.media, 16000)
        spent["decode"] += time.perf_counter() - t0
        feats = {}
        for name, ex in models.items():
            t0 = time.perf_counter()
            ex.begin_item()
            if ex.spec.modality == "visual":
                idx = _grid(times, ex.spec.fps)
                f, t = ex.extract(np.stack([frames[i].to_ndarray(format="rgb24") for i in idx])), times[idx]
            elif ex.spec.modality == "audio":
                f, t = ex.extract(wave, 16000)
            else:
                f, t = ex.extract([it.segments[0].text], it.lang), np.zeros(1)
            feats[ex.spec.modality] = (f, t)
            spent[name] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for group, (f, t) in feats.items():
            np.save(out_dir / f"{it.id}.{group}.npy", np.asarray(f, np.float32))
            np.save(out_dir / f"{it.id}.{group}.t.npy", np.asarray(t, np.float64))
        spent["save"] += time.perf_counter() - t0
    return {"wall_s": time.perf_counter() - t_start, "clips": len(items), "seconds": spent,
            "setup_s": t_loaded - t_start}


def footprint(out: Path, split: str = "static") -> dict:
    """Files and bytes of a store: on disk (allocated blocks), and the bytes of features, times and labels."""
    from engine.store import layout
    store = out / f"{split}.zarr"
    files = disk = data = 0
    for dirpath, _dirs, names in os.walk(store):
        parts = Path(dirpath).relative_to(store).parts  # (shard, group, array, "c", ...) for a chunk file
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            files, disk = files + 1, disk + st.st_blocks * 512
            if name == "zarr.json" or len(parts) < 3 or parts[2] == layout.OFFSETS:
                continue
            if parts[1] == layout.LABELS or (parts[1] not in layout.RESERVED
                                             and parts[2] in (layout.FEATURES, layout.TIMES)):
                data += st.st_size
    private = sum(len(f) for _, _, f in os.walk(out / layout.PRIVATE))
    return {"files": files, "disk_bytes": disk, "data_bytes": data, "private_files": private}


def extraction(ctx: Context) -> list[Ratio]:
    """``clips_vs_plain``, and the footprint of the store the engine wrote."""
    n = ctx.mode.clips
    root = ctx.corpus(f"clips-{n}", lambda: clip_corpus(n))
    out, npy = ctx.store_dir(f"clips-{n}"), ctx.store_dir(f"clips-{n}-plain")
    shutil.rmtree(out, ignore_errors=True)
    ctx.prime()
    # an hour each: on a machine shared with other work both sides can take many times their quiet time
    plain = run_child(["clips_plain", str(root), str(npy), CHEAP], timeout_s=3600)
    eng = run_child(["engine", "--split", "static", "--root", str(root), "--out", str(out), "--extractors", CHEAP,
                     "--quiet"], timeout_s=3600)
    clips = eng["counts"].get("ok", 0)
    if clips != plain["clips"] or eng["rc"]:
        raise RuntimeError(f"engine wrote {eng['counts']} (exit {eng['rc']}), the plain loop {plain['clips']} clips")
    same = compare(out / "static.zarr", npy, list(DIMS))
    e_rate, p_rate = clips / eng["process_s"], plain["clips"] / plain["process_s"]
    t = eng["timings"]
    per = lambda s: f"{1000 * s / clips:.1f} ms"  # noqa: E731
    notes = [
        f"{clips} clips, {eng['media_s']:.0f} media s; engine process {eng['process_s']:.1f} s (main() "
        f"{eng['wall_s']:.1f} s), plain process {plain['process_s']:.1f} s (loop function {plain['wall_s']:.1f} s, "
        f"of it discovery and model loading {plain['setup_s']:.1f} s)",
        f"engine per clip (its report): {t['per_item_wall_ms']:.1f} ms of `run_tasks` wall, of which "
        f"{t['per_item_compute_ms']:.1f} ms decode + encode and {t['per_item_store_ms']:.1f} ms writing; by stage "
        "(visual includes its decode, audio its wait for decoding): "
        + ", ".join(f"{g} {per(s)}" for g, s in sorted(eng["seconds_by_group"].items())),
        f"engine fixed costs: Ray start-up {eng['ray_start_s']:.1f} s, first shard back after "
        f"{t['first_result_s']:.1f} s, `run_tasks` {eng['run_s']:.1f} s, the rest of main() "
        f"{eng['outside_run_s']:.1f} s (discovery, Ray shutdown, report; the media are hashed beside Ray's start "
        f"and the run), interpreter and imports {eng['process_s'] - eng['wall_s']:.1f} s",
        "plain per clip: " + ", ".join(f"{k} {per(v)}" for k, v in plain["seconds"].items()),
    ] + [f"features `{g}`: {s['rows_matched']} rows matched by time ({s['rows_unmatched']} unmatched), cosine mean "
         f"{s['mean_cosine']:.4f} min {s['min_cosine']:.4f}" for g, s in same.items()]
    fp, packed = footprint(out), footprint(packed_store(PACKED_CLIPS)[0].parent)
    fp_notes = [f"{fp['files']} files in the store for {clips} clips ({fp['private_files']} more under "
                f".emos: locks), {fp['disk_bytes'] / 2**20:.1f} MiB on disk for {fp['data_bytes'] / 2**20:.1f} MiB "
                "of features, times and labels (the rest: pooled means, offsets, segments, metadata, block "
                "rounding)", f"the packed store of {PACKED_CLIPS} clips (1,000 to a shard): {packed['files']} files, "
                f"{1000 * packed['files'] / PACKED_CLIPS:.1f} per 1,000 clips; disk/data "
                f"{packed['disk_bytes'] / packed['data_bytes']:.3f}"]
    return [
        Ratio("clips_vs_plain", f"`engine.extract --split static` (fresh process, Ray included) vs the plain loop "
                                f"(one process, PyAV, np.save per clip), {clips} generated clips, extractors {CHEAP}",
              "engine clips/s", e_rate, "plain clips/s", p_rate, "clips per wall s", e_rate / p_rate, ">= 2",
              notes, {"engine": eng, "plain": plain, "features": same},
              {"a": eng["other_share"], "b": plain["other_share"]}),
        Ratio("clips_files_per_1000", "files in the engine's store of that extraction, per 1,000 clips",
              "files", fp["files"], "clips", clips, "files per 1,000 clips", 1000 * fp["files"] / clips, "<= 100",
              fp_notes, fp),
        Ratio("clips_disk_vs_data", "bytes on disk of that store vs the bytes of its features, times and labels",
              "disk MiB", fp["disk_bytes"] / 2**20, "data MiB", fp["data_bytes"] / 2**20, "bytes",
              fp["disk_bytes"] / fp["data_bytes"], "<= 1.3", fp_notes, fp),
    ]


# ------------------------------------------------------------------------------------------------ reading
def open_dataset(store_path: str) -> dict:
    """Seconds to open the store and to build the segment dataset (run in a fresh process for the cold side)."""
    t0 = time.perf_counter()
    from engine.read.reader import open_store
    from engine.read.torchdata import WindowDataset
    t1 = time.perf_counter()
    store = open_store(store_path)
    t2 = time.perf_counter()
    ds = WindowDataset(store, by="segment", pool=True)
    t3 = time.perf_counter()
    return {"import_s": t1 - t0, "open_s": t2 - t1, "dataset_s": t3 - t2, "total_s": t3 - t1, "samples": len(ds)}


class PackedMemmaps:
    """The baseline: ``np.load(mmap_mode="r")`` of each shard's packed arrays, offsets in RAM, a dict of ids."""

    def __init__(self, npy: Path):
        self.where, self.shards = {}, []
        for s in range(len(list(npy.glob("*.ids.json")))):
            for k, iid in enumerate(json.loads((npy / f"{s}.ids.json").read_text())):
                self.where[iid] = (s, k)
            self.shards.append([(np.load(npy / f"{s}.{g}.npy", mmap_mode="r"), np.load(npy / f"{s}.{g}.offsets.npy"))
                                for g in DIMS])


def read_memmap(mm: PackedMemmaps, order: list[str]) -> int:
    n = 0
    for iid in order:
        s, k = mm.where[iid]
        for f, o in mm.shards[s]:
            n += np.array(f[o[k]:o[k + 1]]).nbytes
    return n


def read_dataset(ds, order: list[int]) -> int:
    """Samples one by one, each dropped once read, as a training loop consumes them (keeping all 9,400 samples alive
    in a list measured Python's garbage collector walking them, not the reader: 30k samples/s against 56k)."""
    n = 0
    for i in order:
        n += len(ds[i]["features"])
    return n


def read_reader(store, order: list[str]) -> int:
    n = 0
    for iid in order:
        groups = store.item(iid).groups
        for g in DIMS:
            n += np.array(groups[g].features).nbytes
    return n


def reading(ctx: Context) -> list[Ratio]:
    from engine.read.reader import open_store
    from engine.read.torchdata import WindowDataset
    path, npy, ids = packed_store(PACKED_CLIPS)
    rounds = ctx.mode.reader_rounds
    cold = [run_child(["clips_open", str(path)]) for _ in range(3)]
    warm_other = OtherWork()
    warm = [open_dataset(str(path)) for _ in range(rounds)]
    warm_other = warm_other.done()["other_share"]
    cold_s, warm_s = median([c["total_s"] for c in cold]), median([w["total_s"] for w in warm])
    order = list(np.random.default_rng(2).permutation(ids))
    store, mm = open_store(path), PackedMemmaps(npy)
    ds = WindowDataset(store, by="segment", pool=True)
    sample_of = {ds.item_ids[n]: i for i, n in enumerate(ds.s_item)}  # one segment per clip
    ds_order = [sample_of[i] for i in order]
    sizes = {"reader": read_reader(store, order), "memmap": read_memmap(mm, order)}  # warms the page cache
    for i in ds_order:
        ds[i]
    if sizes["reader"] != sizes["memmap"]:
        raise RuntimeError(f"reader and memmap read different data: {sizes}")
    secs, other = interleaved({"reader": lambda: read_reader(store, order), "memmap": lambda: read_memmap(mm, order),
                               "dataset": lambda: read_dataset(ds, ds_order)}, rounds)
    rate = {k: len(order) / median(v) for k, v in secs.items()}
    shape = (f"{len(ids)} clips of 2.4 s in {len(store.shards)} shards, {sizes['reader'] / 2**20:.0f} MiB of "
             f"features (visual [10,4], audio [240,64], text [1,384] per clip, float32); {rounds} interleaved "
             "rounds, medians")
    c, w = cold[len(cold) // 2], warm[len(warm) // 2]
    open_notes = [shape, f"fresh process (median of {len(cold)}): imports {c['import_s']:.2f} s (not counted), "
                  f"open_store {c['open_s']:.2f} s, WindowDataset {c['dataset_s']:.2f} s, {c['samples']} samples",
                  f"warm (median of {rounds}): open_store {w['open_s']:.2f} s, WindowDataset {w['dataset_s']:.2f} s"]
    return [
        Ratio("clips_open_dataset_s", f"seconds (not a ratio) to open a store of {len(ids)} clips and build "
                                      "WindowDataset(by='segment', pool=True): first open in a fresh process (a) "
                                      "and warm (b); value = a",
              "fresh process s", cold_s, "warm s", warm_s, "s", cold_s, "< 2", open_notes,
              {"cold": cold, "warm": warm}, {"a": max(c["other_share"] for c in cold), "b": warm_other}),
        Ratio("clips_item_vs_memmap", "whole clips in a shuffled order: store.item(id).groups[g].features for "
                                      "every group, copied, vs np.load(mmap_mode='r') of the same packed arrays "
                                      "+ offsets",
              "reader clips/s", rate["reader"], "memmap clips/s", rate["memmap"], "clips/s",
              rate["reader"] / rate["memmap"], ">= 0.8", [shape], {"seconds": secs}, {"a": other, "b": other}),
        Ratio("clips_dataset_vs_memmap", "WindowDataset(by='segment', pool=True)[i] over the same shuffled clips "
                                         "vs the np.load(mmap_mode='r') loop",
              "dataset samples/s", rate["dataset"], "memmap clips/s", rate["memmap"], "clips/s",
              rate["dataset"] / rate["memmap"], ">= 0.3", [shape], {"seconds": secs}, {"a": other, "b": other}),
    ]


def measure(ctx: Context) -> list[Ratio]:
    return extraction(ctx) + reading(ctx)
