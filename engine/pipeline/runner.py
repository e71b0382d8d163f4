"""Ray: extraction actors pinned to GPUs (a share of one each), CPU actors where there is none. The only module that
imports Ray.

Ray does the scheduling, restarts and retries (``max_restarts``, ``max_task_retries``, resource requests); this
module keeps a bounded number of shard tasks in flight per actor (backpressure: the driver holds item specs and
small results, never features; one by default, so that each task goes to the first actor that is free, never queued
behind a long film while another actor idles), hands a task out again later when another run holds its shard, and
reports through hooks (``on_start``, ``on_result``) and :class:`Timings`, which the CLI and the benchmarks use
alike.
"""
from __future__ import annotations

import logging
import os
import queue
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..records import ItemResult, RunPlan
from .plan import ShardTask
from .worker import BUSY, ShardProcessor, model_threads

log = logging.getLogger(__name__)
PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


def init_ray(address: str | None, quiet: bool = False) -> bool:
    """Join ``address`` (or ``auto``) or start a local Ray. Returns whether this call started it."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local runs need no token; a cluster sets its own
    import ray
    if ray.is_initialized():
        return False
    # MALLOC_ARENA_MAX: each item starts decode threads, and glibc's per-thread arenas otherwise let a
    # long-lived actor's memory creep up item after item
    env = {"PYTHONPATH": PROJECT_ROOT, "MALLOC_ARENA_MAX": "2"}
    kw = dict(log_to_driver=not quiet, logging_level=logging.WARNING, include_dashboard=False)
    if address:
        ray.init(address=address, runtime_env={"env_vars": env}, **kw)
    else:  # "local": a new Ray of our own, even when a `ray start` cluster runs on this machine
        # its workers inherit this process's environment: set here, not through a runtime_env, whose set-up
        # added ~0.5 s to every actor's start (0.80 s to the first call of an actor, 0.25 s without)
        paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if paths[0] != PROJECT_ROOT:
            os.environ["PYTHONPATH"] = os.pathsep.join([PROJECT_ROOT, *filter(None, paths)])
        os.environ["MALLOC_ARENA_MAX"] = env["MALLOC_ARENA_MAX"]
        # the raylet connects to its own object store as it starts, retrying every 1 s by default (10 tries):
        # when the store was not yet listening at the first try (4 of 6 starts on a 2-core machine) Ray's start
        # took 1 s more (3.3 s against 2.3 s). Every 100 ms, 100 tries: the same 10 s before giving up.
        os.environ.setdefault("RAY_raylet_client_connect_timeout_milliseconds", "100")
        os.environ.setdefault("RAY_raylet_client_num_connect_attempts", "100")
        ray.init(address="local", num_cpus=os.cpu_count() or 1, **kw)
    return True


def shutdown_ray() -> None:
    """Stop the Ray this process started (or leave the cluster it joined).

    A local Ray's autoscaler monitor answers SIGTERM by writing to the GCS, which ``ray.shutdown`` has already
    stopped by then: it hung until Ray killed it after a 1 s grace (shutdown 1.1-1.4 s on 2 cores, 0.33-0.36 s with
    the monitor stopped first). Nothing autoscales a Ray of our own, so its monitor is stopped first; a joined
    cluster's node starts no processes here, so there is nothing to stop."""
    import ray
    try:  # Ray's private API: where it changes, Ray's own shutdown stops the monitor, a second slower
        node = ray._private.worker._global_node
        if node is not None and node.is_head():
            node.kill_monitor(check_alive=False)
    except Exception:
        log.debug("could not stop Ray's monitor before its shutdown", exc_info=True)
    ray.shutdown()


def placement(workers: int = 0, cores_per_worker: int = 2) -> tuple[int, dict]:
    """How many actors, and the resources of each, from what the cluster has: every actor always fits.

    With GPUs, ``n`` actors share them evenly: ``k = ceil(n / gpus)`` actors per GPU, each asking ``1 / k`` of one
    (Ray packs fractional requests inside a single GPU, so 3 actors at 2/3 on 2 GPUs would leave one pending
    forever; at 1/2 they fit). CPUs are shared so that every GPU node can hold its ``k`` actors per GPU. Without
    GPUs, ``n`` is one actor per ``cores_per_worker`` cores unless ``workers`` is given, and the largest CPU share
    is chosen with which the nodes, as they are, hold all ``n`` actors.
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
    n = workers or max(1, cpus // max(1, cores_per_worker))
    node_cpus = [c for c in (r.get("CPU", 0) for r in nodes) if c > 0] or [1.0]
    # a node holds floor(its cpus / share) actors: the largest share of the form cpus_i / j that holds all n
    fits = [c / j for c in node_cpus for j in range(1, n + 1)
            if sum(math.floor(x / (c / j) + 1e-9) for x in node_cpus) >= n]
    return n, {"num_cpus": share(max(fits))}


# Which GPU an actor was given. Ray sets CUDA_VISIBLE_DEVICES to the GPU ids it gives an actor, so inside the
# actor CUDA numbers the visible GPUs from 0: the GPU Ray gave as id 1 is CUDA device 0 there. DALI's device_id and
# torch's cuda:N take that CUDA number.
def ray_gpu_ids() -> list[str]:
    """The GPU ids Ray gave this worker (empty outside a Ray worker, or when it was given none)."""
    try:
        import ray
        if not ray.is_initialized():
            return []
        return [str(g) for g in ray.get_gpu_ids()]
    except Exception:  # not inside Ray (a plain script, a test): no assignment
        return []


def device_id() -> int:
    """The CUDA device number of the first GPU Ray gave this actor (0 when Ray gave none).

    >>> device_id()   # outside Ray
    0
    """
    ids = ray_gpu_ids()
    if not ids:
        return 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if ids[0] in visible:  # what Ray does: only its GPUs are visible, so this is usually 0
        return visible.index(ids[0])
    if not visible and ids[0].isdigit():  # visibility not narrowed: CUDA numbers every GPU, Ray's id is the number
        return int(ids[0])
    return 0


@dataclass
class Timings:
    """Where the fixed cost of a run goes (seconds), filled as it happens."""

    ray_start_s: float = 0.0
    first_result_s: float | None = None  # from the start of run_tasks to the first finished task
    first_item_s: float | None = None    # from the start of the command to the first finished item
    run_s: float = 0.0
    busy_requeues: int = 0
    per_task: list[float] = field(default_factory=list)


def _actor_class():
    import ray

    @ray.remote
    class ExtractionActor:
        """One per GPU (or per CPU share): loads each model once, then handles shard tasks one by one."""

        def __init__(self, plan: RunPlan):
            if ray_gpu_ids():
                import torch
                if torch.cuda.is_available():
                    plan.device = "cuda"
                    plan.decode = {**plan.decode, "device_id": device_id()}
            self.proc = ShardProcessor(plan)
            # models load while the driver still plans and the first item decodes, and on a CPU torch is imported
            # there too (~1.1 s on 2 cores): the first task starts at once, decodes, and encodes its frames with
            # the ONNX image encoder meanwhile (its other encoders wait for their models)
            self.proc.load_in_background()

        def process(self, task: ShardTask, progress=None) -> list[ItemResult]:
            node = ray.get_runtime_context().get_node_id()
            tell = None if progress is None else (lambda n: progress.put_nowait(n))
            results = self.proc.process(task, tell)
            for r in results:
                r.node = node
            return results

        def pid(self) -> int:
            return os.getpid()

    return ExtractionActor


class Pool:
    """The extraction actors of a run. Started as early as the plan's groups are known: actors import, and load
    their models, while the driver still hashes media and plans shards."""

    def __init__(self, plan: RunPlan, workers: int, max_restarts: int, max_task_retries: int,
                 max_actors: int | None = None, cores_per_worker: int = 2):
        n, resources = placement(workers, cores_per_worker)
        self.n = max(1, min(n, max_actors or n))  # never more actors than tasks: each loads every model
        plan.threads = plan.threads or max(1, round(resources.get("num_cpus", 1)))
        actor = _actor_class()
        self._new = lambda: actor.options(max_restarts=max_restarts, max_task_retries=max_task_retries,
                                          **resources).remote(plan)
        self.actors = [self._new() for _ in range(self.n)]
        log.info("%d extraction actor(s), each %s; %d thread(s) for a CPU model's own pool", self.n, resources,
                 model_threads(plan))

    def replace(self, a: int) -> None:
        self.actors[a] = self._new()

    def close(self) -> None:
        import ray
        for actor in self.actors:
            try:
                ray.kill(actor)
            except Exception:  # pragma: no cover - already gone
                pass


class TaskFeed:
    """Shard tasks handed to a run while the driver still plans (hashes media): :func:`run_tasks` starts on the
    first ones. The planner calls :meth:`put` for each task and :meth:`close` when it is done, with the exception
    that stopped it if one did: the run then raises it at once instead of finishing the tasks it has."""

    _END = object()

    def __init__(self):
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self.closed = False     # seen by the run: no task will come any more
        self.items = 0          # in the tasks handed over so far
        self._cancelled = False
        self._error: BaseException | None = None

    def put(self, task: ShardTask) -> None:
        if self._cancelled:
            raise RuntimeError("the run stopped: no more tasks are planned")
        self.items += len(task.items)
        self._q.put(task)

    def cancel(self) -> None:
        """The run is over (it failed or was interrupted): the planner's next :meth:`put` raises, so it stops at
        its next task (after hashing that task's files) rather than after hashing every file."""
        self._cancelled = True

    def close(self, error: BaseException | None = None) -> None:
        self._error = error
        self._q.put(self._END)

    def take(self, wait_s: float = 0.0) -> list[ShardTask]:
        """The tasks handed over so far (waiting up to ``wait_s`` for the first of them); raises the planner's
        exception once it is closed with one."""
        out = []
        try:
            x = self._q.get(timeout=wait_s) if wait_s > 0 else self._q.get_nowait()
            while True:
                if x is self._END:
                    self.closed = True
                    if self._error is not None:
                        raise self._error
                    return out
                out.append(x)
                x = self._q.get_nowait()
        except queue.Empty:
            return out


def run_tasks(tasks: list[ShardTask], plan: RunPlan, workers: int, max_restarts: int, max_task_retries: int,
              in_flight_per_worker: int = 1, on_result: Callable[[ItemResult], None] | None = None,
              on_start: Callable[[list], None] | None = None, timings: Timings | None = None,
              on_progress: Callable[[int], None] | None = None, pool: Pool | None = None,
              feed: TaskFeed | None = None) -> list[ItemResult]:
    """Run shard tasks through a pool of actors (``pool``, or one made here); one result per item, in completion
    order. ``tasks`` and, with ``feed``, those it hands over until it is closed. ``on_progress(n)`` hears of items
    computed inside shards still running (a shard of clips is one task of minutes). The pool is closed at the
    end."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError
    from ray.util.queue import Empty, Queue

    timings = timings or Timings()
    t_start = time.perf_counter()
    pool = pool or Pool(plan, workers, max_restarts, max_task_retries, max_actors=len(tasks))
    n, actors = pool.n, pool.actors
    if on_start:
        on_start(actors)
    progress = Queue(actor_options={"num_cpus": 0}) if on_progress is not None else None

    def drain():
        while progress is not None:
            try:
                for n in progress.get_nowait_batch(max(1, progress.qsize())):
                    on_progress(n)
            except Empty:
                return
            if progress.empty():
                return
    todo = deque(tasks)
    later: deque = deque()  # tasks whose shard another run holds: tried again once `todo` is empty
    busy: dict = {}  # ref -> (task, actor index, sent at)
    load = [0] * n
    results: list[ItemResult] = []
    planning = feed is not None and not feed.closed
    try:
        while todo or busy or later or planning:
            if planning:  # tasks still coming: wait for one only when nothing else is to be done
                todo.extend(feed.take(wait_s=0.0 if (todo or busy or later) else 0.2))
                planning = not feed.closed
            if not todo and later and not busy:
                time.sleep(0.2)
                todo.extend(later)
                later.clear()
            for level in range(in_flight_per_worker):  # every actor gets a task before any gets another
                for a in range(n):
                    if todo and load[a] <= level:
                        task = todo.popleft()
                        busy[actors[a].process.remote(task, progress)] = (task, a, time.perf_counter(), actors[a])
                        load[a] += 1
            if not busy:
                continue
            # while tasks still come, look again soon: an actor with a free slot should not wait for them
            ready, _ = ray.wait(list(busy), num_returns=1, timeout=0.2 if planning else 1.0)
            drain()
            for ref in ready:
                task, a, sent, actor = busy.pop(ref)
                load[a] -= 1
                try:
                    done = ray.get(ref)
                except (RayActorError, RayTaskError) as exc:  # retries used up: these items fail, the run goes on
                    done = [ItemResult.failed(it, f"{it.id}: worker failed after {max_task_retries} retries "
                                                  f"({type(exc).__name__}) [{it.media}]") for it in task.items]
                    # a dead actor is replaced, once: its other tasks in flight fail the same way
                    if isinstance(exc, RayActorError) and pool.actors[a] is actor:
                        pool.replace(a)
                if timings.first_result_s is None:
                    timings.first_result_s = time.perf_counter() - t_start
                if done and all(r.status == BUSY for r in done):
                    timings.busy_requeues += 1
                    later.append(task)
                    continue
                timings.per_task.append(time.perf_counter() - sent)
                for res in done:
                    results.append(res)
                    if on_result:
                        on_result(res)
    finally:
        if progress is not None:
            progress.shutdown()
        pool.close()
        timings.run_s = time.perf_counter() - t_start
    return results
