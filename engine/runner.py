"""Ray placement: extraction actors pinned to GPUs (``num_gpus=1``), CPU actors where there is none.

Ray does the scheduling, restarts and retries (``max_restarts``, ``max_task_retries``, resource requests); this
module only keeps a bounded number of items in flight per actor (backpressure: the driver holds item specs and
small results, never features) and turns each finished task into an :class:`ItemResult`.
"""
from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path
from typing import Callable, Iterable

from .dataset import Item
from .worker import ItemProcessor, ItemResult, RunPlan

log = logging.getLogger(__name__)
PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)


def init_ray(address: str | None, quiet: bool = False) -> bool:
    """Join ``address`` (or ``auto``) or start a local Ray. Returns whether this call started it."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local runs need no token; a cluster sets its own
    import ray
    if ray.is_initialized():
        return False
    # MALLOC_ARENA_MAX: each item starts decode threads, and glibc's per-thread arenas otherwise let a
    # long-lived actor's memory creep up item after item
    kw = dict(log_to_driver=not quiet, logging_level=logging.WARNING, include_dashboard=False,
              runtime_env={"env_vars": {"PYTHONPATH": PROJECT_ROOT, "MALLOC_ARENA_MAX": "2"}})
    if address:
        ray.init(address=address, **kw)
    else:  # "local": a new Ray of our own, even when a `ray start` cluster runs on this machine
        ray.init(address="local", num_cpus=os.cpu_count() or 1, **kw)
    return True


def placement(workers: int = 0) -> tuple[int, dict]:
    """How many actors, and the resources of each, from what the cluster has: every actor always fits.

    With GPUs, ``n`` actors share them evenly: ``k = ceil(n / gpus)`` actors per GPU, each asking ``1 / k`` of one
    (Ray packs fractional requests inside a single GPU, so 3 actors at 2/3 on 2 GPUs would leave one pending
    forever; at 1/2 they fit). CPUs are shared so that every GPU node can hold its ``k`` actors per GPU. Without
    GPUs, the largest CPU share is chosen with which the nodes, as they are, hold all ``n`` actors.
    """
    import math

    import ray

    def share(x: float) -> float:
        # Ray refuses fractions above 1 and keeps 1/10000 resolution: round down, never past what fits
        return float(math.floor(x)) if x >= 1 else math.floor(x * 10_000) / 10_000

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    gpus = sum(int(r.get("GPU", 0)) for r in nodes)
    cpus = max(1, int(sum(r.get("CPU", 0) for r in nodes)))
    if gpus:
        n = workers or gpus
        per_gpu = math.ceil(n / gpus)
        cpu = min(r.get("CPU", 0) / (int(r["GPU"]) * per_gpu) for r in nodes if int(r.get("GPU", 0)))
        return n, {"num_gpus": 1 if per_gpu == 1 else share(1 / per_gpu), "num_cpus": share(cpu)}
    n = workers or max(1, cpus // 2)
    node_cpus = [c for c in (r.get("CPU", 0) for r in nodes) if c > 0] or [1.0]
    # a node holds floor(its cpus / share) actors: the largest share of the form cpus_i / j that holds all n
    fits = [c / j for c in node_cpus for j in range(1, n + 1)
            if sum(math.floor(x / (c / j) + 1e-9) for x in node_cpus) >= n]
    return n, {"num_cpus": share(max(fits))}


def _actor_class():
    import ray

    @ray.remote
    class ExtractionActor:
        """One per GPU (or per CPU share): loads each model once, then handles items one by one."""

        def __init__(self, plan: RunPlan):
            self.proc = ItemProcessor(plan)

        def process(self, items: list[Item]) -> list[ItemResult]:
            node = ray.get_runtime_context().get_node_id()
            results = self.proc.process_many(items)
            for r in results:
                r.node = node
            return results

        def pid(self) -> int:
            return os.getpid()

    return ExtractionActor


def run_items(items: Iterable[Item], plan: RunPlan, workers: int, max_restarts: int, max_task_retries: int,
              in_flight_per_worker: int = 2, items_per_task: int = 1,
              on_result: Callable[[ItemResult], None] | None = None,
              on_start: Callable[[list], None] | None = None) -> list[ItemResult]:
    """Run ``items`` through a pool of actors; one result per item, in completion order.

    Items travel in tasks of ``items_per_task`` (short static clips share encoder batches inside the actor);
    each actor has at most ``in_flight_per_worker`` tasks queued, so memory stays flat on any corpus size.
    """
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    n, resources = placement(workers)
    plan.threads = plan.threads or int(resources.get("num_cpus", 1))
    Actor = _actor_class()
    actors = [Actor.options(max_restarts=max_restarts, max_task_retries=max_task_retries, **resources).remote(plan)
              for _ in range(n)]
    if on_start:
        on_start(actors)
    log.info("%d extraction actor(s), each %s", n, resources)
    items = list(items)
    step = max(1, items_per_task)
    queue = deque(items[i:i + step] for i in range(0, len(items), step))
    busy: dict = {}  # ref -> (items, actor index)
    load = [0] * n
    results: list[ItemResult] = []
    try:
        while queue or busy:
            for a in range(n):
                while queue and load[a] < in_flight_per_worker:
                    task = queue.popleft()
                    busy[actors[a].process.remote(task)] = (task, a)
                    load[a] += 1
            ready, _ = ray.wait(list(busy), num_returns=1, timeout=1.0)
            for ref in ready:
                task, a = busy.pop(ref)
                load[a] -= 1
                try:
                    done = ray.get(ref)
                except (RayActorError, RayTaskError) as exc:  # retries used up: these items fail, the run goes on
                    done = [ItemResult(id=it.id, status="failed", source=it.source,
                                       error=f"{it.id}: worker failed after {max_task_retries} retries "
                                             f"({type(exc).__name__}) [{it.media}]") for it in task]
                    if isinstance(exc, RayActorError):  # a dead actor is replaced
                        actors[a] = Actor.options(max_restarts=max_restarts, max_task_retries=max_task_retries,
                                                  **resources).remote(plan)
                for res in done:
                    results.append(res)
                    if on_result:
                        on_result(res)
    finally:
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # pragma: no cover - already gone
                pass
    return results

