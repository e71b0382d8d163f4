"""``pipeline_efficiency``: the engine end to end vs its slowest stage run alone, on the same corpus.

End to end: ``engine.extract.main`` in a fresh process, wall time of ``main()`` with nothing subtracted (Ray's
start-up, actor start, model loading, fingerprints, shutdown, report all included). Ray's start-up and shutdown
are timed inside that same run and reported beside it.

Each stage alone, in this process, one after the other, with the actor's torch threads: decode
(``iter_frames_pyav`` at each visual extractor's rate and configured short side, plus ``decode_audio``), each
extractor on the pre-decoded input (its ``setup()``, i.e. model loading, not timed), and the store writes
(``FeatureStore.stage`` -> ``write_modality`` per group, segments and labels -> ``publish``). Throughput of a stage
is the corpus's media seconds over the stage's seconds; the slowest stage bounds what a pipeline can reach.
"""
from __future__ import annotations

import shutil
import time

import numpy as np

from .common import Context, OtherWork, Ratio, engine_threads, fmt, items_of, make_plan, media_seconds


def stages_alone(ctx: Context) -> dict:
    import torch

    import extractors as registry
    from engine.decode import decode_audio, iter_frames_pyav
    from engine.store import FeatureStore

    items = items_of(ctx.corpus("1x"))
    media_s = media_seconds(items)
    other = OtherWork()
    scratch = ctx.store_dir("1x-stages")
    shutil.rmtree(scratch, ignore_errors=True)
    plan = make_plan(scratch, ctx.mode.extractors, threads=engine_threads())
    torch.set_num_threads(plan.threads)
    d = plan.decode
    fps_set = {g.spec.fps or 0.0 for g in plan.groups if g.modality == "visual"}
    rates = {int(g.spec.sample_rate or 16000) for g in plan.groups if g.modality == "audio"}

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    frames = {(it.id, fps): list(iter_frames_pyav(it.media, fps or None, short_side=d.get("short_side", 256),
                                                  chunk_frames=d.get("chunk_frames", 32),
                                                  threads=d.get("threads", 0)))
              for it in items for fps in fps_set}
    t1 = time.perf_counter()
    tracks = {(it.id, sr): decode_audio(it.media, sr, d.get("audio_chunk_s", 30.0)) for it in items for sr in rates}
    t2 = time.perf_counter()
    seconds["decode"] = t2 - t0
    split = {"decode video": t1 - t0, "decode audio": t2 - t1}

    feats: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for g in plan.groups:
        ex = registry.create(g.spec, device="cpu")
        ex.setup()
        t0 = time.perf_counter()
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
    del frames, tracks

    store = FeatureStore(scratch, "stream")
    store.create()
    t0 = time.perf_counter()
    for it in items:  # the arrays an engine item holds: modalities, segments, labels
        w = store.stage(it.id, {"source": it.source, "lang": it.lang})
        for g in plan.groups:
            f, t = feats[(it.id, g.name)]
            w.write_modality(g.name, f, t, {"extractor": g.spec.name})
        for name, values in (("start", [s.start_s for s in it.segments]), ("end", [s.end_s for s in it.segments])):
            w.write_array(f"segments/{name}", np.array(values, np.float64), ("segment",), {"units": "s"})
        w.write_array("segments/text", np.array([s.text for s in it.segments], dtype=object), ("segment",))
        for name, arr in it.labels.items():
            w.write_array(f"labels/{name}", arr, ("segment", "label")[:np.ndim(arr)])
        w.publish({"source": it.source, "groups": [g.name for g in plan.groups], "split": "stream"})
    seconds["store writes"] = time.perf_counter() - t0
    return {"media_s": media_s, "seconds": seconds, "decode_split_s": split,
            "other_share": other.done()["other_share"], "torch_threads": plan.threads,
            "throughput": {k: media_s / v for k, v in seconds.items()}}


def measure(ctx: Context) -> list[Ratio]:
    eng = ctx.engine_run("1x")
    st = stages_alone(ctx)
    slowest = min(st["throughput"], key=st["throughput"].get)
    e_tput = eng["media_s"] / eng["wall_s"]
    without_ray = eng["wall_s"] - eng["ray_init_s"] - eng["ray_shutdown_s"]
    notes = [
        "stages alone (media s per s): " + ", ".join(f"{k} {v:.1f}" for k, v in st["throughput"].items())
        + f"; decode split: video {st['decode_split_s']['decode video']:.2f} s, audio "
          f"{st['decode_split_s']['decode audio']:.2f} s",
        f"engine: {eng['media_s']:.1f} media s in {eng['wall_s']:.2f} s; inside that run, Ray start-up "
        f"(`init_ray`) {eng['ray_init_s']:.2f} s and shutdown {eng['ray_shutdown_s']:.2f} s, discovery and "
        f"fingerprints before Ray {eng.get('before_ray_s', 0.0):.2f} s, first item back "
        f"{fmt(eng['first_result_s'])} s after the actors were asked for, `run_items` {eng['run_items_s']:.2f} s",
        f"for information only (not the ratio): without Ray start-up and shutdown the engine reaches "
        f"{eng['media_s'] / without_ray:.1f} media s/s, {eng['media_s'] / without_ray / st['throughput'][slowest]:.2f}"
        f" of the slowest stage",
    ]
    return [Ratio("pipeline_efficiency",
                  f"engine end to end (`engine.extract.main`, extractors {ctx.mode.extractors}, nothing subtracted) "
                  f"vs its slowest stage run alone (`{slowest}`) on the same 1x corpus",
                  "engine media s/s", e_tput, f"{slowest} alone media s/s", st["throughput"][slowest],
                  "media s per wall s", e_tput / st["throughput"][slowest], ">= 0.85", notes,
                  {"engine": eng, "stages": st}, {"a": eng["other_share"], "b": st["other_share"]})]

