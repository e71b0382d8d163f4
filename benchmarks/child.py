"""What the benchmarks run in a fresh process: ``python -m benchmarks.child RESULT.json KIND ARGS...``.

- ``engine ARGV...``: ``engine.extract.main(ARGV)``, timed, with Ray's start-up and shutdown timed inside it and
  the peak RSS of every process Ray starts polled from ``/proc``.
- ``item ROOT ITEM OUT EXTRACTORS``: :meth:`engine.worker.ItemProcessor.process` on one item, no Ray.
- ``sequential ROOT OUT EXTRACTORS``: the one-item-at-a-time baseline of :mod:`benchmarks.sequential`.

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
    import engine.runner as runner
    from engine.extract import main

    t: dict = {"ray_inits": 0, "ray_init_s": 0.0, "ray_shutdown_s": 0.0, "run_items_s": 0.0,
               "first_result_s": None, "started_ray": False}
    init_ray, run_items = runner.init_ray, runner.run_items

    def timed_init_ray(address, quiet=False):
        t0 = time.perf_counter()
        t["before_ray_s"] = t0 - t_main
        started = init_ray(address, quiet=quiet)
        t["ray_init_s"] += time.perf_counter() - t0
        t["ray_inits"] += 1
        t["started_ray"] = t["started_ray"] or started
        import ray  # imported by init_ray; patched here so that a run which never starts Ray never imports it
        shutdown = ray.shutdown

        def timed_shutdown(*a, **kw):
            t1 = time.perf_counter()
            shutdown(*a, **kw)
            t["ray_shutdown_s"] += time.perf_counter() - t1
        ray.shutdown = timed_shutdown
        return started

    def timed_run_items(items, plan, **kw):
        t0 = time.perf_counter()
        on_result = kw.get("on_result")

        def first(r):
            if t["first_result_s"] is None:
                t["first_result_s"] = time.perf_counter() - t0
            if on_result:
                on_result(r)
        kw["on_result"] = first
        try:
            return run_items(items, plan, **kw)
        finally:
            t["run_items_s"] += time.perf_counter() - t0

    runner.init_ray, runner.run_items = timed_init_ray, timed_run_items
    _become_subreaper()
    with ProcessTreeMemory() as mem:
        t_main = time.perf_counter()
        rc = main(argv)
        wall = time.perf_counter() - t_main
        mem.sample()
    t["leftover_processes"], t["leftover_wait_s"] = _reap_descendants()
    # Ray's workers are reaped by processes that are not waited for: their CPU never reaches getrusage
    t["unreaped_cpu_s"] = max(0.0, mem.summary()["descendants_cpu_s"] - (own_cpu_s(True) - own_cpu_s(False)))
    out = Path(argv[argv.index("--out") + 1])
    report = json.loads((out / "stream.report.json").read_text())
    return {"rc": rc, "wall_s": wall, **t, "media_s": report["media_s"], "counts": report["counts"],
            "items": len(report["items"]), "memory": mem.summary(),
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
    from engine.store import FeatureStore
    from engine.worker import ItemProcessor

    from .common import engine_threads, items_of
    it = next(i for i in items_of(Path(root)) if i.id == item_id)
    FeatureStore(out, "stream").create()
    plan = make_plan(Path(out), extractors, threads=engine_threads())
    proc = ItemProcessor(plan)
    for g in plan.groups:  # load the models first, so that what the item itself adds can be told apart
        proc.extractor(g)
    ready = own_memory_mib()
    t0 = time.perf_counter()
    res = proc.process(it)
    return {"status": res.status, "error": res.error, "media_s": res.media_s, "wall_s": time.perf_counter() - t0,
            "seconds": res.seconds, "models_loaded": ready, "after": own_memory_mib()}


def sequential(root: str, out: str, extractors: str) -> dict:
    from .sequential import run_sequential
    return run_sequential(Path(root), Path(out), extractors)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result_path, kind, *rest = sys.argv[1:]
    fn = {"engine": lambda: engine(rest), "item": lambda: item(*rest), "sequential": lambda: sequential(*rest)}[kind]
    result = fn()
    result["peak_rss_mib"] = own_memory_mib()["VmHWM"]
    Path(result_path).write_text(json.dumps(result, default=str))
