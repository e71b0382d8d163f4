"""``pipeline_efficiency``: the engine end to end vs its slowest stage run alone, on the same corpus.

End to end: ``engine.extract.main`` in a fresh process, wall time of ``main()`` with nothing subtracted (Ray's
start-up, actor start, model loading, fingerprints, shutdown, report all included). Ray's start-up and the run of
the shard tasks come from that run's own ``Timings`` and are reported beside it.

Each stage alone, in this process, one after the other, with the actor's torch threads: decode
(``iter_frames_pyav`` at each visual extractor's rate and configured short side, plus ``decode_audio``), each
extractor on the pre-decoded input (its ``setup()``, i.e. model loading, not timed), and the store writes
(one ``ItemRows`` per film, its segments and labels, ``ShardWriter.write`` -> ``publish``: a film is a one-item
shard, as the engine writes it). Throughput of a stage
is the corpus's media seconds over the stage's seconds; the slowest stage bounds what a pipeline can reach.

``cpu_bound_efficiency``: the engine end to end vs the CPU bound, ``cores / sum over stages of (CPU seconds per
media second)``: the throughput of a pipeline that keeps every core busy with exactly the stages' work and nothing
else. The stages' CPU seconds are this process's (every thread) while each runs alone, as above.

Both on the EmoS-scale film corpus (``Context.films``: 13 of the release's durations, in full mode).
"""
from __future__ import annotations

import shutil
import time

import numpy as np

from .common import Context, OtherWork, Ratio, engine_threads, fmt, items_of, make_plan, media_seconds


def stages_alone(ctx: Context) -> dict:
    import torch

    from engine.pipeline.worker import model_threads
    from extractors.base import set_cpu_threads

    items = items_of(ctx.corpus(ctx.films))
    media_s = media_seconds(items)
    other = OtherWork()
    scratch = ctx.store_dir(f"{ctx.films}-stages")
    shutil.rmtree(scratch, ignore_errors=True)
    plan = make_plan(scratch, ctx.mode.extractors, threads=engine_threads())
    torch.set_num_threads(plan.threads)
    set_cpu_threads(model_threads(plan))  # a model's own pool as wide as in the actor (half its threads)
    try:
        return _stages(ctx, items, media_s, other, scratch, plan)
    finally:
        set_cpu_threads(0)


def _stages(ctx: Context, items, media_s: float, other: OtherWork, scratch, plan) -> dict:
    import extractors as registry
    from extractors.base import cpu_threads
    from engine.decode import decode_audio, iter_frames_pyav, probe
    from engine.store import FeatureStore, ItemRows

    d = plan.decode
    fps_set = {g.spec.fps or 0.0 for g in plan.groups if g.modality == "visual"}
    rates = {int(g.spec.sample_rate or 16000) for g in plan.groups if g.modality == "audio"}

    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}  # CPU seconds of this process (every thread) per stage
    c0 = time.process_time()
    t0 = time.perf_counter()
    frames = {(it.id, fps): list(iter_frames_pyav(it.media, fps or None, short_side=d.get("short_side", 256),
                                                  chunk_frames=d.get("chunk_frames", 32),
                                                  threads=d.get("threads", 0), cores=plan.threads))
              for it in items for fps in fps_set}
    t1 = time.perf_counter()
    tracks = {(it.id, sr): decode_audio(it.media, sr, d.get("audio_chunk_s", 10.0)) for it in items for sr in rates}
    t2 = time.perf_counter()
    seconds["decode"] = t2 - t0
    cpu["decode"] = time.process_time() - c0
    split = {"decode video": t1 - t0, "decode audio": t2 - t1}

    feats: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for g in plan.groups:
        ex = registry.create(g.spec, device="cpu")
        ex.setup()
        t0, c0 = time.perf_counter(), time.process_time()
        for it in items:
            ex.begin_item()
            if g.modality == "visual":
                chunks = frames[(it.id, g.spec.fps or 0.0)]
                f = np.concatenate([ex.extract(c.frames) for c in chunks])
                t = np.concatenate([c.t for c in chunks])
            elif g.modality == "audio":
                track = tracks[(it.id, int(g.spec.sample_rate or 16000))]
                f, t = ex.extract(track.wave, track.sample_rate)
                t = np.asarray(t) + track.start_s
            else:
                f = ex.extract([s.text for s in it.segments], it.lang)
                t = np.array([s.start_s for s in it.segments])
            feats[(it.id, g.name)] = (np.asarray(f, dtype=plan.store_dtype), np.asarray(t, np.float64))
        seconds[f"extract {g.spec.name}"] = time.perf_counter() - t0
        cpu[f"extract {g.spec.name}"] = time.process_time() - c0
    durations = {it.id: probe(it.media).duration_s for it in items}
    del frames, tracks

    store = FeatureStore(scratch, "stream")
    store.create()
    group_attrs = {g.name: {"extractor": g.spec.name, "dim": g.spec.dim} for g in plan.groups}
    dims = {g.name: g.spec.dim for g in plan.groups}
    t0, c0 = time.perf_counter(), time.process_time()
    for it in items:  # the arrays an engine item holds: modalities, segments, labels
        duration = durations[it.id]
        rows = ItemRows(it.id, {"source": it.source, "duration_s": duration, "lang": it.lang,
                                "groups": list(dims)},
                        groups={g.name: feats[(it.id, g.name)] for g in plan.groups},
                        segments={"start": np.array([s.start_s for s in it.segments], np.float64),
                                  "end": it.segment_ends(duration),
                                  "text": np.array([s.text for s in it.segments], dtype=object)},
                        labels=dict(it.labels), label_attrs=dict(it.label_attrs))
        w = store.stage(it.id)
        w.write([rows], group_attrs, dims, plan.pooled, plan.store_dtype)
        w.publish()
    seconds["store writes"] = time.perf_counter() - t0
    cpu["store writes"] = time.process_time() - c0
    return {"media_s": media_s, "seconds": seconds, "cpu_s": cpu, "decode_split_s": split,
            "other_share": other.done()["other_share"], "torch_threads": plan.threads,
            "model_threads": cpu_threads(),
            "throughput": {k: media_s / v for k, v in seconds.items()}}


def cpu_bound(st: dict) -> tuple[int, float, dict[str, float]]:
    """This machine's cores, the CPU bound (media s per s) and each stage's CPU seconds per media second, from
    :func:`stages_alone`'s result."""
    import os
    cores = os.cpu_count() or 1
    cpu_per_media_s = {k: v / st["media_s"] for k, v in st["cpu_s"].items()}
    return cores, cores / sum(cpu_per_media_s.values()), cpu_per_media_s


def measure(ctx: Context) -> list[Ratio]:
    eng = ctx.engine_run(ctx.films)
    st = ctx.once("stages", lambda: stages_alone(ctx))
    slowest = min(st["throughput"], key=st["throughput"].get)
    e_tput = eng["media_s"] / eng["wall_s"]
    in_run = eng["media_s"] / max(1e-9, eng["run_s"])
    notes = [
        "stages alone (media s per s): " + ", ".join(f"{k} {v:.1f}" for k, v in st["throughput"].items())
        + f"; decode split: video {st['decode_split_s']['decode video']:.2f} s, audio "
          f"{st['decode_split_s']['decode audio']:.2f} s",
        f"engine: {eng['media_s']:.1f} media s in {eng['wall_s']:.2f} s; its Timings: Ray start-up "
        f"{eng['ray_start_s']:.2f} s, `run_tasks` {eng['run_s']:.2f} s (actor start and model loading included), "
        f"first shard back {fmt(eng['first_result_s'])} s after `run_tasks` began; the rest of main() "
        f"{eng['outside_run_s']:.2f} s (discovery, Ray shutdown, report; the media are hashed beside Ray's start "
        "and the run)",
        f"for information only (not the ratio): during `run_tasks` the engine reaches {in_run:.1f} media s/s, "
        f"{in_run / st['throughput'][slowest]:.2f} of the slowest stage",
    ]
    cores, bound, cpu_per_media_s = cpu_bound(st)
    bound_notes = [f"{cores} cores; CPU seconds per media second of each stage alone: "
                   + ", ".join(f"{k} {v:.3f}" for k, v in cpu_per_media_s.items())
                   + f"; sum {sum(cpu_per_media_s.values()):.3f}, so the bound is {bound:.1f} media s/s",
                   notes[1], notes[2]]
    return [Ratio("pipeline_efficiency",
                  f"engine end to end (`engine.extract.main`, extractors {ctx.mode.extractors}, nothing subtracted) "
                  f"vs its slowest stage run alone (`{slowest}`) on the same {ctx.films} corpus",
                  "engine media s/s", e_tput, f"{slowest} alone media s/s", st["throughput"][slowest],
                  "media s per wall s", e_tput / st["throughput"][slowest], ">= 0.85", notes,
                  {"engine": eng, "stages": st}, {"a": eng["other_share"], "b": st["other_share"]}),
            Ratio("cpu_bound_efficiency",
                  f"engine end to end (as above) vs the CPU bound: {cores} cores over the sum of every stage's CPU "
                  f"seconds per media second, each stage alone, same {ctx.films} corpus",
                  "engine media s/s", e_tput, "CPU bound media s/s", bound, "media s per wall s", e_tput / bound,
                  ">= 0.9", bound_notes, {"cpu_per_media_s": cpu_per_media_s},
                  {"a": eng["other_share"], "b": st["other_share"]})]

