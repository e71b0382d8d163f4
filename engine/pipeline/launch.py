"""A run's Ray side as the CLI drives it: started early, fed the shard tasks, reporting progress, shut down.

Ray's start and the actors' start (imports, model loading) are the fixed cost of a run. They begin as soon as
the driver sees that some item may need work, while the media are hashed and the shards planned in a background
thread (Ray must start in the main thread), and each shard task goes to the actors as soon as its items are hashed
(:class:`TaskFeed`): a first run reads every media file once to hash it, and the actors need not wait for all of
them. A run with nothing to do starts nothing.
"""
from __future__ import annotations

import logging
import os
import sys
import time

from ..records import Item, ItemResult, RunPlan
from .runner import Pool, TaskFeed, Timings, init_ray, run_tasks, shutdown_ray

log = logging.getLogger(__name__)


def may_need_work(items: list[Item], index: dict, force: bool) -> list[Item]:
    """The items that are not obviously cached, by a stat alone (the planner decides by hashing)."""
    out = []
    for it in items:
        if it.error is not None:
            continue
        old = index.get(it.id, (None, None))[1]
        try:
            st = os.stat(it.media) if it.media else None
        except OSError:
            continue  # the planner reports it
        media = (old or {}).get("media") or {}
        if force or old is None or old.get("damaged") or (st is not None and (
                media.get("size"), media.get("mtime_ns")) != (st.st_size, st.st_mtime_ns)):
            out.append(it)
    return out


class Launch:
    """Ray and the actors of one run; :meth:`run` runs the shard tasks on them."""

    def __init__(self, plan: RunPlan, run_cfg: dict, address: str | None, workers: int | None, quiet: bool,
                 max_actors: int, t0: float, cores_per_worker: int = 2):
        self.plan, self.cfg, self.quiet, self.t0 = plan, run_cfg, quiet, t0
        self.workers = workers or int(run_cfg.get("workers", 0))
        self.timings = Timings()
        t = time.perf_counter()
        self.started_ray = init_ray(address, quiet=quiet)
        self.timings.ray_start_s = time.perf_counter() - t
        try:  # the actors start importing and loading their models now
            self.pool = Pool(plan, self.workers, int(run_cfg.get("max_restarts", 4)),
                             int(run_cfg.get("max_task_retries", 2)), max_actors=max_actors,
                             cores_per_worker=cores_per_worker)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Nothing (more) to run: stop what was started."""
        if getattr(self, "pool", None) is not None:
            self.pool.close()
        if self.started_ray:
            shutdown_ray()
            self.started_ray = False

    def run(self, tasks, feed: TaskFeed | None = None, expected: int | None = None) -> list[ItemResult]:
        """Run the shard tasks, and those ``feed`` hands over while the driver still plans, with a progress bar
        (unless quiet) over ``expected`` items (default: the tasks'); shut Ray down if this run started it."""
        bar, self._feed = None, feed
        try:
            if not self.quiet:
                from tqdm import tqdm
                total = sum(len(t.items) for t in tasks) if expected is None else expected
                bar = tqdm(total=total, unit="item", desc=f"extract {self.plan.split}", file=sys.stderr)
            return run_tasks(tasks, self.plan, workers=self.workers, max_restarts=int(self.cfg.get("max_restarts", 4)),
                             max_task_retries=int(self.cfg.get("max_task_retries", 2)),
                             in_flight_per_worker=int(self.cfg.get("in_flight_per_worker", 1)),
                             on_result=self._on_result(bar), timings=self.timings, pool=self.pool,
                             on_progress=self._on_progress(bar) if bar is not None else None, feed=feed)
        finally:
            if bar is not None:
                if feed is not None and feed.closed:  # the planner's count: `expected` came from a stat alone
                    bar.total = feed.items
                    bar.refresh()
                bar.close()
            self.close()

    def _grow(self, bar) -> None:
        """The bar's total up to the items handed over so far (the count it started from came from a stat alone:
        a changed extractor makes items need work whose files did not change)."""
        if self._feed is not None and self._feed.items > bar.total:
            bar.total = self._feed.items

    def _on_progress(self, bar):
        self._ahead = 0  # items counted from progress reports before their shard finished

        def on_progress(n: int):
            self._ahead += n
            self._grow(bar)
            bar.update(n)
        return on_progress

    def _on_result(self, bar):
        self._ahead, done_media, t_run = 0, [0.0], time.perf_counter()

        def on_result(r: ItemResult):
            if self.timings.first_item_s is None:
                self.timings.first_item_s = time.perf_counter() - self.t0
            done_media[0] += r.media_s
            if r.status == "failed":
                log.error("%s", r.error)
            if bar is not None:
                self._grow(bar)
                rate = done_media[0] / max(1e-9, time.perf_counter() - t_run)
                bar.set_postfix_str(f"{done_media[0]:.0f} media s, {rate:.2f} media s/s")
                if self._ahead:
                    self._ahead -= 1
                else:
                    bar.update(1)
        return on_result
