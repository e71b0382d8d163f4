"""What the benchmarks run in a fresh process: ``python -m benchmarks.child RESULT.json KIND ARGS...``.

- ``engine ARGV...``: ``engine.extract.main(ARGV)``, timed, with the run's own timings (Ray start-up, the shard
  tasks) from its report and the peak RSS of every process Ray starts polled from ``/proc``.
- ``item ROOT ITEM OUT EXTRACTORS``: one film through :class:`engine.pipeline.worker.ShardProcessor`
  (``process_items``), no Ray.
- ``sequential ROOT OUT EXTRACTORS``: the one-item-at-a-time baseline of :mod:`benchmarks.sequential`.
- ``clips_plain ROOT OUT EXTRACTORS``: the plain loop over clips of :mod:`benchmarks.clips`.
- ``clips_open STORE``: opening a store and building its segment dataset (:func:`benchmarks.clips.open_dataset`).

Each reports its own peak RSS (``VmHWM``) as ``peak_rss_mib`` (see :func:`benchmarks.common.run_child`).
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from .common import ProcessTreeMemory, make_plan, own_cpu_s, own_memory_mib


def engine(argv: list[str]) -> dict:
    """``engine.extract.main(ARGV)`` as a user runs it. Where its time went comes from the run's own
    :class:`engine.pipeline.runner.Timings` (Ray start-up, first result, the run of the shard tasks), which the
    CLI writes into the report; the rest of ``main()`` (discovery, hashing, planning, Ray shutdown, the report)
    is the difference."""
    from engine.extract import main

    _become_subreaper()
    with ProcessTreeMemory() as mem:
        t_main = time.perf_counter()
        rc = main(argv)
        wall = time.perf_counter() - t_main
        mem.sample()
    t: dict = {}
    t["leftover_processes"], t["leftover_wait_s"] = _reap_descendants()
    # Ray's workers are reaped by processes that are not waited for: their CPU never reaches getrusage
    t["unreaped_cpu_s"] = max(0.0, mem.summary()["descendants_cpu_s"] - (own_cpu_s(True) - own_cpu_s(False)))
    split = argv[argv.index("--split") + 1]
    report = json.loads((Path(argv[argv.index("--out") + 1]) / f"{split}.report.json").read_text())
    timings = report.get("timings") or {}  # absent when no shard task ran (all cached): Ray never started
    ray_start, run = timings.get("ray_start_s", 0.0), timings.get("run_s", 0.0)
    return {"rc": rc, "wall_s": wall, **t, "started_ray": "timings" in report, "ray_imported": "ray" in sys.modules,
            "ray_start_s": ray_start, "run_s": run, "first_result_s": timings.get("first_result_s"),
            "outside_run_s": wall - ray_start - run, "timings": timings, "media_s": report["media_s"],
            "counts": report["counts"], "items": len(report["items"]), "memory": mem.summary(),
            "seconds_by_group": {g: sum(i["seconds"].get(g, 0.0) for i in report["items"])
                                 for g in {g for i in report["items"] for g in i["seconds"]}}}


def _become_subreaper() -> None:
    """Should a Ray process outlive the raylet or the driver's shutdown, it is handed to this process, which waits
    for it: no Ray process of this run goes on using the CPU during the next measurement."""
    import ctypes
    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _reap_descendants(timeout_s: float = 15.0) -> tuple[int, float]:
    """Wait for every remaining descendant to exit (SIGKILL after ``timeout_s``); returns (how many, seconds)."""
    import os
    import signal
    t0, n = time.perf_counter(), 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return n, time.perf_counter() - t0
        if pid:
            n += 1
            continue
        if time.perf_counter() - t0 > timeout_s:
            for d in ProcessTreeMemory()._descendants():
                try:
                    os.kill(d, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.05)


def item(root: str, item_id: str, out: str, extractors: str) -> dict:
    from engine.pipeline.worker import ShardProcessor, process_items
    from engine.store import FeatureStore

    from .common import engine_threads, items_of
    it = next(i for i in items_of(Path(root)) if i.id == item_id)
    FeatureStore(out, "stream").create()
    plan = make_plan(Path(out), extractors, threads=engine_threads())
    proc = ShardProcessor(plan)
    for g in plan.groups:  # load the models first, so that what the item itself adds can be told apart
        proc.extractor(g)
    ready = own_memory_mib()
    t0 = time.perf_counter()
    (res,) = process_items(proc, [it], shard_items=1)  # a film is a one-item shard
    return {"status": res.status, "error": res.error, "media_s": res.media_s, "wall_s": time.perf_counter() - t0,
            "seconds": res.seconds, "models_loaded": ready, "after": own_memory_mib()}


def sequential(root: str, out: str, extractors: str) -> dict:
    from .sequential import run_sequential
    return run_sequential(Path(root), Path(out), extractors)



def clips_plain(root: str, out: str, extractors: str) -> dict:
    from .clips import plain_loop
    with ProcessTreeMemory():  # polled like the engine's run, so that both pay for the polling
        return plain_loop(root, out, extractors)


def clips_open(store: str) -> dict:
    from .clips import open_dataset
    return open_dataset(store)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result_path, kind, *rest = sys.argv[1:]
    fn = {"engine": lambda: engine(rest), "item": lambda: item(*rest), "sequential": lambda: sequential(*rest),
          "clips_plain": lambda: clips_plain(*rest), "clips_open": lambda: clips_open(*rest)}[kind]
    result = fn()
    result["peak_rss_mib"] = own_memory_mib()["VmHWM"]
    Path(result_path).write_text(json.dumps(result, default=str))
