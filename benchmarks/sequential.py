"""``speedup_vs_sequential``: the engine vs the same extractors run "the usual way" on the same corpus.

The usual way (video_features, MMSA-FET): one process, one item at a time, no Ray. For each item, decode every
frame to RGB at full resolution with PyAV and keep them all, decode the whole audio track and resample it in one
call, then run each extractor (frames picked on the same 4 fps grid, last frame shown at or before ``k / fps``),
then ``np.save`` one file per item and modality (features, and its timestamps beside it). The extractors are the
registry's own, so any difference in the features comes from decoding (the engine scales frames to the
configured short side with swscale, and resamples audio piece by piece). The outputs are compared row by row
(rows matched by time): max |difference| and cosine per row; on the shortest film, the frames both pick are also
compared pixel for pixel at native size. Both run in a fresh process; both times include model loading.

``bound_vs_sequential`` (for information): the CPU bound of ``cpu_bound_efficiency`` (the cores over the stages'
CPU seconds per media second, each stage alone, measured once per run for both ratios, so ``--only sequential``
runs the stages too) against the same loop: the most that any pipeline of these stages
could gain over it on this machine. The engine's speedup is this times its ``cpu_bound_efficiency``, so where this is
below 2 / 0.9, a 2x speedup needs the stages themselves to cost less, not a better pipeline.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from .common import Context, Ratio, engine_threads, fmt, items_of, make_plan, media_seconds, run_child
from .pipeline import cpu_bound, stages_alone


def _decode_all(path: str, sample_rate: int | None):
    """Every video frame as full-resolution RGB (with its time), and the whole audio track as mono float32."""
    import av
    import torch
    import torchaudio
    frames, times, wave = [], [], None
    with av.open(path) as c:
        if c.streams.video:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            tb = float(s.time_base)
            for f in c.decode(s):
                frames.append(f.to_ndarray(format="rgb24"))
                times.append(f.pts * tb)
    if sample_rate:
        with av.open(path) as c:
            if c.streams.audio:
                s = c.streams.audio[0]
                src = s.codec_context.sample_rate
                parts = [f.to_ndarray().astype(np.float32) for f in c.decode(s)]  # fltp: [channels, n]
                x = torch.from_numpy(np.concatenate(parts, axis=1).mean(axis=0))
                wave = (x if src == sample_rate else torchaudio.functional.resample(x, src, sample_rate)).numpy()
    order = np.argsort(times, kind="stable")
    return [frames[i] for i in order], np.asarray(times, np.float64)[order], wave


def _grid(times: np.ndarray, fps: float | None) -> np.ndarray:
    """Indices of the frames on screen at the grid times ``k / fps`` (every frame when fps is falsy)."""
    if not fps or len(times) == 0:
        return np.arange(len(times))
    end = times[-1] + (times[-1] - times[-2] if len(times) > 1 else 1.0 / fps)
    grid = np.arange(int(np.ceil(end * fps - 1e-9))) / fps
    idx = np.searchsorted(times, grid + 1e-6, side="right") - 1
    return np.unique(idx[idx >= 0])


def run_sequential(root: Path, out: Path, extractor_names: str) -> dict:
    """The baseline itself (runs in a fresh process; see :mod:`benchmarks.child`)."""
    t_start = time.perf_counter()
    import extractors as registry
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    plan = make_plan(out, extractor_names)
    models = {}
    for g in plan.groups:
        models[g.name] = registry.create(g.spec)
        models[g.name].setup()
    visual = [g for g in plan.groups if g.modality == "visual"]
    audio = [g for g in plan.groups if g.modality == "audio"]
    rates = {int(g.spec.sample_rate or 16000) for g in audio}
    if len(rates) > 1:
        raise ValueError("the baseline decodes audio at one sample rate")
    spent = {"decode": 0.0, "extract": 0.0, "save": 0.0}
    items = items_of(root)
    for it in items:
        t0 = time.perf_counter()
        frames, times, wave = _decode_all(it.media, next(iter(rates)) if rates else None)
        t1 = time.perf_counter()
        feats = {}
        for g in visual:
            idx = _grid(times, g.spec.fps)
            models[g.name].begin_item()
            feats[g.name] = (models[g.name].extract(np.stack([frames[i] for i in idx])), times[idx])
        for g in audio:
            models[g.name].begin_item()
            feats[g.name] = models[g.name].extract(wave, int(g.spec.sample_rate or 16000))
        for g in plan.groups:
            if g.modality == "text":
                feats[g.name] = (models[g.name].extract([s.text for s in it.segments], it.lang),
                                 np.array([s.start_s for s in it.segments]))
        del frames
        t2 = time.perf_counter()
        for name, (f, t) in feats.items():
            np.save(out / f"{it.id}.{name}.npy", np.asarray(f, dtype=plan.store_dtype))
            np.save(out / f"{it.id}.{name}.t.npy", np.asarray(t, dtype=np.float64))
        spent["decode"] += t1 - t0
        spent["extract"] += t2 - t1
        spent["save"] += time.perf_counter() - t2
    wall = time.perf_counter() - t_start
    return {"wall_s": wall, "media_s": media_seconds(items), "items": len(items), "seconds": spent,
            "torch_threads": _torch_threads()}


def _torch_threads() -> int:
    import torch
    return torch.get_num_threads()


def compare(store_path: Path, npy_dir: Path, groups: list[str]) -> dict:
    """Per group, over rows with the same time (within 1 ms): rows matched, max |diff|, max |value|, cosine."""
    from engine.reader import StoreReader
    reader = StoreReader(store_path)
    out: dict[str, dict] = {}
    for g in groups:
        rows = unmatched = 0
        max_diff = max_abs = 0.0
        cosines = []
        for item_id in reader.items():
            m = reader.item(item_id).groups[g]
            a, ta = np.asarray(m.features, np.float64), m.t
            b = np.load(npy_dir / f"{item_id}.{g}.npy").astype(np.float64)
            tb = np.load(npy_dir / f"{item_id}.{g}.t.npy")
            if len(tb):
                j = np.minimum(np.searchsorted(tb, ta - 1e-3), len(tb) - 1)
                ok = np.abs(tb[j] - ta) <= 1e-3
            else:
                j, ok = np.zeros(len(ta), int), np.zeros(len(ta), bool)
            a, b = a[ok], b[j[ok]]
            rows += len(a)
            unmatched += int((~ok).sum()) + (len(tb) - len(a))
            if len(a):
                max_diff = max(max_diff, float(np.abs(a - b).max()))
                max_abs = max(max_abs, float(np.abs(b).max()))
                na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
                cosines.append((a * b).sum(1) / np.maximum(na * nb, 1e-12))
        cos = np.concatenate(cosines) if cosines else np.zeros(0)
        out[g] = {"rows_matched": rows, "rows_unmatched": unmatched, "max_abs_diff": max_diff,
                  "max_abs_value": max_abs, "mean_cosine": float(cos.mean()) if len(cos) else None,
                  "min_cosine": float(cos.min()) if len(cos) else None}
    return out


def same_frames(media: str, fps: float | None) -> dict:
    """Whether the engine (``iter_frames_pyav`` at native size) and the baseline pick the same frames, at the same
    times, with the same pixels: then any difference in features comes from resizing, not from sampling."""
    from engine.decode import iter_frames_pyav
    frames, times, _ = _decode_all(media, None)
    idx = _grid(times, fps)
    chunks = list(iter_frames_pyav(media, fps, short_side=0))
    t = np.concatenate([c.t for c in chunks])
    same_t = len(t) == len(idx) and bool(np.allclose(t, times[idx]))
    return {"frames": len(t), "same_times": same_t,
            "same_pixels": same_t and all(np.array_equal(f, frames[i]) for f, i in
                                          zip((f for c in chunks for f in c.frames), idx))}


def measure(ctx: Context) -> list[Ratio]:
    eng = ctx.engine_run(ctx.films)
    npy_dir = ctx.store_dir(f"{ctx.films}-sequential")
    seq = run_child(["sequential", str(ctx.corpus(ctx.films)), str(npy_dir), ctx.mode.extractors], timeout_s=3600)
    plan = make_plan(npy_dir, ctx.mode.extractors)
    groups = [g.name for g in plan.groups]
    same = compare(ctx.store_dir(ctx.films) / "stream.zarr", npy_dir, groups)
    shortest = min(items_of(ctx.corpus(ctx.films)), key=lambda it: it.duration_s or 0.0)
    picked = {g.name: same_frames(shortest.media, g.spec.fps) for g in plan.groups if g.modality == "visual"}
    e_tput, s_tput = eng["media_s"] / eng["wall_s"], seq["media_s"] / seq["wall_s"]
    notes = [f"engine: {eng['media_s']:.1f} media s in {eng['wall_s']:.2f} s (Ray start-up {eng['ray_start_s']:.2f} s "
             f"included); sequential: {seq['media_s']:.1f} media s in {seq['wall_s']:.2f} s (decode "
             f"{seq['seconds']['decode']:.2f} s, extract {seq['seconds']['extract']:.2f} s, save "
             f"{seq['seconds']['save']:.2f} s, the rest model loading; torch threads {seq['torch_threads']}, "
             f"engine actor threads {engine_threads()})"]
    for g, s in same.items():
        notes.append(f"features `{g}`: {s['rows_matched']} rows matched by time ({s['rows_unmatched']} unmatched), "
                     f"max |diff| {s['max_abs_diff']:.3g} (max |value| {s['max_abs_value']:.3g}), cosine mean "
                     f"{fmt(s['mean_cosine'], '.4f')} min {fmt(s['min_cosine'], '.4f')}")
    for g, p in picked.items():
        notes.append(f"frames of `{g}` in {shortest.id} at native size: {p['frames']} frames, same times "
                     f"{p['same_times']}, same pixels {p['same_pixels']} (so visual differences come from the "
                     "engine scaling frames to the configured short side at decode time, before the extractor's own "
                     "resize, where the baseline resizes the full-resolution frame once)")
    st = ctx.once("stages", lambda: stages_alone(ctx))
    cores, bound, per_stage = cpu_bound(st)
    ceiling_notes = [
        f"the CPU bound: {cores} cores over {sum(per_stage.values()):.3f} CPU s per media s (the stages alone, as in "
        f"`cpu_bound_efficiency`: " + ", ".join(f"{k} {v:.3f}" for k, v in per_stage.items()) + "); the usual loop: "
        f"{s_tput:.2f} media s/s, i.e. {1 / s_tput:.3f} wall s per media s",
        f"so `speedup_vs_sequential` >= 2 needs the engine at {2 * s_tput / bound:.2f} or more of its CPU bound "
        f"(`cpu_bound_efficiency`); it reached {e_tput / bound:.2f} in this run"]
    return [Ratio("bound_vs_sequential",
                  "the CPU bound of the engine's stages (as in `cpu_bound_efficiency`) vs the usual loop, same "
                  f"{ctx.films} corpus: the most any pipeline of these stages can gain over the loop on this machine",
                  "CPU bound media s/s", bound, "sequential media s/s", s_tput, "media s per wall s", bound / s_tput,
                  None, ceiling_notes, {"cpu_per_media_s": per_stage},
                  {"a": st["other_share"], "b": seq["other_share"]}),
            Ratio("speedup_vs_sequential",
                  f"engine (`engine.extract.main`, extractors {ctx.mode.extractors}) vs the same extractors one item "
                  "at a time in one process, full-resolution RGB decode of every frame, np.save per item and "
                  f"modality; same {ctx.films} corpus, fresh process each",
                  "engine media s/s", e_tput, "sequential media s/s", s_tput, "media s per wall s",
                  e_tput / s_tput, ">= 2x", notes,
                  {"engine": eng, "sequential": seq, "features": same, "frames": picked},
                  {"a": eng["other_share"], "b": seq["other_share"]})]

