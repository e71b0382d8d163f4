"""Faults: a worker killed mid-item, a whole run killed mid-write, two runs on one store at once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from engine.datasets import discover
from engine.reader import open_store
from engine.store import FeatureStore

from .conftest import FAST, make_corpus

ROOT = Path(__file__).resolve().parent.parent
FILMS = {f"Film {k}": ("en", f"Film {k}", [("First line.", "Joy", 1.5), ("Second line.", "Fear", 1.5),
                                            ("Third line.", "Anger", 1.5)]) for k in range(4)}


def groups():
    from engine.config import load_config
    from engine.extract import make_groups
    return make_groups(load_config(), FAST)


def wait_until(fn, timeout_s=60.0):
    end = time.time() + timeout_s
    while time.time() < end:
        if fn():
            return True
        time.sleep(0.02)
    return False


def test_a_worker_killed_mid_item_is_redone_and_every_item_completes_once(tmp_path, ray_address):
    import ray

    from engine.pipeline.plan import plan_shards
    from engine.pipeline.runner import run_tasks
    from engine.records import RunPlan

    root = make_corpus(tmp_path / "emos", FILMS)
    out = tmp_path / "out"
    store = FeatureStore(out, "stream")
    store.create()
    plan = RunPlan(out=str(out), split="stream", groups=groups(), decode={"short_side": 64})
    killed = []

    def kill_when_busy(actors):
        pid = ray.get(actors[0].pid.remote())

        def killer():
            # SIGKILL the worker once it is writing an item (a staging folder exists)
            if wait_until(lambda: any(store.staging.iterdir())):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        threading.Thread(target=killer, daemon=True).start()

    tasks, done = plan_shards(discover("stream", root), plan.groups, store.index(), 1, False)
    assert done == [] and len(tasks) == len(FILMS)
    results = run_tasks(tasks, plan, workers=1, max_restarts=3, max_task_retries=3, on_start=kill_when_busy)
    assert killed, "the worker was never seen writing"
    assert sorted(r.id for r in results) == sorted(FILMS)  # one result per item
    assert all(r.status == "ok" for r in results), [r.error for r in results]
    assert len({r.worker_pid for r in results} - set(killed)) >= 1  # a restarted process finished the work
    reader = open_store(store.path)
    assert reader.items() == sorted(FILMS)
    for iid in reader.items():
        assert len(reader.item(iid).groups["visual"].t) > 0
    assert not list(store.staging.iterdir())  # the dead worker's half-written item was cleaned up


def test_a_run_takes_the_tasks_handed_over_while_it_runs_and_ends_when_planning_does(tmp_path, ray_address):
    """The driver hands shard tasks over as it hashes the media (TaskFeed): a run with no task yet waits for them,
    takes those that come after it began, and ends once the feed is closed and its tasks are done."""
    from engine.pipeline.plan import plan_shards
    from engine.pipeline.runner import TaskFeed, run_tasks
    from engine.records import RunPlan

    root = make_corpus(tmp_path / "emos", dict(list(FILMS.items())[:2]))
    out = tmp_path / "out"
    store = FeatureStore(out, "stream")
    store.create()
    plan = RunPlan(out=str(out), split="stream", groups=groups(), decode={"short_side": 64})
    first, second = plan_shards(discover("stream", root), plan.groups, store.index(), 1, False)[0]
    feed = TaskFeed()
    seen = []

    def on_result(res):  # the second task comes only after the first is done; then planning ends
        seen.append(res.id)
        if len(seen) == 1:
            feed.put(second)
            feed.close()
    threading.Timer(1.0, feed.put, [first]).start()  # nothing to run when the run begins
    out_box = []
    run = threading.Thread(target=lambda: out_box.append(run_tasks(
        [], plan, workers=1, max_restarts=0, max_task_retries=0, on_result=on_result, feed=feed)), daemon=True)
    run.start()
    run.join(timeout=180)
    assert not run.is_alive(), "the run did not end once the feed was closed and its tasks were done"
    (results,) = out_box
    assert seen == [first.items[0].id, second.items[0].id]
    assert [r.status for r in results] == ["ok", "ok"], [r.error for r in results]
    assert open_store(store.path).items() == sorted(it.id for it in (*first.items, *second.items))
    feed.cancel()
    try:
        feed.put(first)
    except RuntimeError as exc:
        assert "stopped" in str(exc)
    else:
        raise AssertionError("a cancelled feed took a task")


def test_a_planning_failure_stops_the_run_with_its_error(tmp_path, ray_address, monkeypatch):
    """A planner that fails after handing a task over (a bug, not a bad file: those fail their item) stops the
    run: main raises its error instead of finishing the tasks first or waiting for tasks that never come."""
    import engine.extract as cli
    from engine.pipeline.plan import plan_shards

    def failing(items, groups, index, shard_items, force, ready=None):
        def hand_one_then_fail(task):
            ready(task)
            raise RuntimeError("planner bug")
        return plan_shards(items, groups, index, shard_items, force, ready=hand_one_then_fail)
    monkeypatch.setattr(cli, "plan_shards", failing)
    root = make_corpus(tmp_path / "emos", dict(list(FILMS.items())[:2]))
    raised = []

    def run():
        try:
            cli.main(["--split", "stream", "--root", str(root), "--out", str(tmp_path / "out"), "--extractors",
                      FAST, "--address", ray_address, "--quiet"])
        except RuntimeError as exc:
            raised.append(str(exc))
    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(timeout=180)
    assert not th.is_alive(), "the run waited on after its planner failed"
    assert raised == ["planner bug"]
    # stopped at once: the task handed over was not finished first (a fresh actor needs seconds to import torch
    # and load its models; the run sees the error within a fraction of one)
    assert open_store(tmp_path / "out" / "stream.zarr").items() == []


def _extract_cmd(root, out, address, *extra):
    return [sys.executable, "-m", "engine.extract", "--split", "stream", "--root", str(root), "--out", str(out),
            "--extractors", FAST, "--address", address, "--quiet", *extra]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}


def test_a_run_killed_mid_write_leaves_a_sound_store_and_the_next_run_finishes(tmp_path, ray_address):
    root = make_corpus(tmp_path / "emos", FILMS)
    out = tmp_path / "out"
    proc = subprocess.Popen(_extract_cmd(root, out, ray_address), env=_env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    zpath = out / "stream.zarr"
    staging = out / ".emos" / "staging" / "stream"
    try:
        # kill the run while an item is being written, after at least one was published
        ok = wait_until(lambda: staging.is_dir() and any(staging.iterdir())
                        and zpath.is_dir() and any(p.is_dir() for p in zpath.iterdir()), timeout_s=90)
        assert ok, "the run never reached a mid-write state"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    reader = open_store(zpath)  # the store opens
    done = reader.items()
    assert 1 <= len(done) < len(FILMS)
    for iid in done:  # complete items are intact
        item = reader.item(iid)
        assert item.shard.attrs["complete"] is True and len(item.window(0, 99)["audio"].t) > 0
    # the next run finishes only what is missing (the killed run's workers may still be finishing one)
    time.sleep(1.0)
    r = subprocess.run(_extract_cmd(root, out, ray_address), env=_env(), cwd=tmp_path, capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((out / "stream.report.json").read_text())
    assert report["counts"].get("failed", 0) == 0
    cached = {i["id"] for i in report["items"] if i["status"] == "cached"}
    assert set(done) <= cached
    assert open_store(zpath).items() == sorted(FILMS)


def test_two_runs_at_once_share_the_work_and_never_corrupt(tmp_path, ray_address):
    root = make_corpus(tmp_path / "emos", FILMS)
    out = tmp_path / "out"
    procs = [subprocess.Popen(_extract_cmd(root, out, ray_address, "--workers", "1"), env=_env(), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    written = sum(int(o.split(" item(s): ")[1].split(" written")[0]) for o in outs)
    assert written == len(FILMS)  # every item computed exactly once across the two runs
    reader = open_store(out / "stream.zarr")
    assert reader.items() == sorted(FILMS)
    for iid in reader.items():
        w = reader.window(iid, 0, 99)
        assert all(len(v.t) > 0 for v in w.values())
        assert np.all(np.diff(w["visual"].t) > 0)
