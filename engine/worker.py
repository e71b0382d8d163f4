"""What one worker does with one item: decode, run the extractors, write the item, publish it whole.

Knows nothing of Ray (the actor in :mod:`engine.runner` wraps it) and names no model: extractors come from the
registry by name. Bad media or metadata fail the item with an :class:`ItemError` line; the item already in the
store, if any, stays as it was.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

import extractors as registry

from . import STORE_FORMAT, __version__
from .cache import Group, plan_item
from .dataset import Item
from .decode import decode_audio, iter_frames, probe, select_backend
from .pipeline.schedule import prefetch
from .errors import ItemError, MediaError
from .store import FeatureStore

log = logging.getLogger(__name__)


@dataclass
class RunPlan:
    """Everything a worker needs, as plain data."""

    out: str
    split: str
    groups: list[Group]
    decode: dict
    store_dtype: str = "float32"
    duration_tolerance_s: float = 1.0
    force: bool = False
    threads: int = 0
    half_precision: bool = True


@dataclass
class ItemResult:
    id: str
    status: str                      # ok | cached | failed
    source: str = ""
    media_s: float = 0.0
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    worker_pid: int = 0
    node: str = ""                   # the Ray node that ran it (set by the actor)


class _Job:
    """One item of a batch while it is being computed: what to do, what is done, and whether it failed."""

    def __init__(self, item: Item, res: ItemResult, plan, info, writer, old: dict | None, todo: list[Group]):
        self.item, self.res, self.plan, self.info, self.writer, self.todo = item, res, plan, info, writer, todo
        old_missing = (old or {}).get("missing", {})
        self.missing: dict[str, str] = {g: old_missing[g] for g in plan.reuse if g in old_missing}
        self.rows: dict[str, list[np.ndarray]] = {g.name: [] for g in todo}
        self.times: dict[str, list[np.ndarray]] = {g.name: [] for g in todo}
        self.audio = None  # future of {sample_rate: AudioTrack | None}
        self.error: BaseException | None = None

    def needs(self, modality: str) -> list[Group]:
        return [g for g in self.todo if g.modality == modality and g.name not in self.missing]


class _FrameBatcher:
    """Feeds a stateless visual extractor full batches drawn from several items, and routes rows back."""

    def __init__(self, ex, group: str, size: int):
        self.ex, self.group, self.size = ex, group, max(1, size)
        self.pending: list[tuple[_Job, np.ndarray]] = []
        self.n = 0

    def add(self, job: _Job, frames: np.ndarray) -> None:
        self.pending.append((job, frames))
        self.n += len(frames)
        if self.n >= self.size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending, self.n = self.pending, [], 0
        try:
            out = self.ex.extract(np.concatenate([f for _, f in pending]))
        except Exception as exc:  # an encoder failing on a shared batch fails the items whose frames it held
            for job, _ in pending:
                job.error = job.error or exc
            return
        row = 0
        for job, frames in pending:
            job.rows[self.group].append(out[row:row + len(frames)])
            row += len(frames)


class ItemProcessor:
    """Holds the loaded extractors of one worker; :meth:`process_many` handles a batch of items.

    Items of a batch share encoder calls: text of all items goes to the text encoder at once, and frames of
    several items fill the batches of stateless visual encoders (``Extractor.stateful`` False). Audio of the
    batch is decoded in a background thread while the visual encoders run. Each item still fails alone.
    """

    def __init__(self, plan: RunPlan):
        self.plan = plan
        self.store = FeatureStore(plan.out, plan.split)
        self._extractors: dict[str, registry.Extractor] = {}
        self.device = "cpu"
        try:
            import torch
            if plan.threads:
                torch.set_num_threads(plan.threads)
            if torch.cuda.is_available():
                self.device = "cuda"
        except ImportError:  # pragma: no cover
            pass
        self.backend = select_backend(plan.decode.get("backend", "auto"))
        self._by_name = {g.name: g for g in plan.groups}

    def extractor(self, group: Group):
        ex = self._extractors.get(group.name)
        if ex is None:  # each model is loaded once per worker, on first use
            precision = "fp16" if (self.device == "cuda" and self.plan.half_precision) else "fp32"
            device = "cpu" if group.spec.device == "cpu" else self.device
            ex = registry.create(group.spec, device=device, precision=precision)
            ex.setup()
            self._extractors[group.name] = ex
        return ex

    # ------------------------------------------------------------------------------------------------ batches
    def process(self, item: Item) -> ItemResult:
        return self.process_many([item])[0]

    def process_many(self, items: list[Item]) -> list[ItemResult]:
        """Results in the order of ``items``. Item locks are taken in id order, so concurrent runs never
        deadlock, and held until the batch is written."""
        results = {id(it): ItemResult(id=it.id, status="failed", source=it.source, warnings=list(it.warnings),
                                      worker_pid=os.getpid()) for it in items}
        with contextlib.ExitStack() as locks:
            jobs: list[_Job] = []
            for item in sorted(items, key=lambda i: i.id):
                res = results[id(item)]
                if item.error is not None:
                    res.error = item.error.line()
                    continue
                try:
                    locks.enter_context(self.store.lock(item.id))
                    self.store.recover(item.id)
                    job = self._prepare(item, res)
                    if job is not None:
                        jobs.append(job)
                except Exception as exc:
                    self._fail(res, item, exc)
            if jobs:
                with ThreadPoolExecutor(1, thread_name_prefix="audio-decode") as pool:
                    for job in jobs:
                        if job.needs("audio"):
                            job.audio = pool.submit(self._decode_audio, job)
                    self._stage(jobs, self._visual)
                    self._stage(jobs, self._audio)
                self._stage(jobs, self._text)
                for job in jobs:
                    if job.error is None:
                        self._stage([job], self._publish)
                    if job.error is not None:
                        job.writer.abort()
                        self._fail(job.res, job.item, job.error)
        return [results[id(it)] for it in items]

    def _stage(self, jobs: list[_Job], fn) -> None:
        live = [j for j in jobs if j.error is None]
        try:
            fn(live)
        except Exception as exc:  # an encoder failing on a shared batch fails the items it held
            for j in live:
                j.error = j.error or exc

    def _fail(self, res: ItemResult, item: Item, exc: BaseException) -> None:
        if isinstance(exc, ItemError):
            exc.item = exc.item or item.id
            exc.file = exc.file or item.media
            res.status, res.error = "failed", exc.line()
        else:  # a bug or an encoder failure: this item fails, the run goes on
            log.error("%s: %s", item.id, "".join(traceback.format_exception(exc)))
            res.status, res.error = "failed", f"{item.id}: {type(exc).__name__}: {exc} [{item.media}]"

    def _prepare(self, item: Item, res: ItemResult) -> _Job | None:
        old = self.store.item_attrs(item.id)
        plan = plan_item(item, self.plan.groups, old, self.plan.force)
        if not plan.rewrite:
            res.status, res.reused = "cached", plan.reuse
            res.media_s = float(old.get("duration_s") or 0.0)
            return None
        info = probe(item.media)
        if item.duration_s is not None and abs(info.duration_s - item.duration_s) > self.plan.duration_tolerance_s:
            raise MediaError(f"media lasts {info.duration_s:.2f}s but its metadata says {item.duration_s:.2f}s "
                             f"(tolerance {self.plan.duration_tolerance_s}s): wrong clip?", file=item.media)
        res.media_s = info.duration_s
        writer = self.store.stage(item.id, {"source": item.source, "lang": item.lang})
        job = _Job(item, res, plan, info, writer, old, [self._by_name[n] for n in plan.compute])
        for g in job.todo:
            if g.modality == "visual" and not info.has_video:
                job.missing[g.name] = "no video stream"
            elif g.modality == "audio" and not info.has_audio:
                job.missing[g.name] = "no audio track"
        return job

    # --------------------------------------------------------------------------------------------- modalities
    def _cast(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=self.plan.store_dtype)

    def _visual(self, jobs: list[_Job]) -> None:
        d = self.plan.decode
        for fps in sorted({g.spec.fps or 0.0 for j in jobs for g in j.needs("visual")}):
            batchers: dict[str, _FrameBatcher] = {}
            for job in jobs:
                gs = [g for g in job.needs("visual") if (g.spec.fps or 0.0) == fps]
                if not gs:
                    continue
                t0 = time.perf_counter()
                try:
                    exs = [self.extractor(g) for g in gs]
                    for ex in exs:
                        ex.begin_item()
                    chunks = iter_frames(job.item.media, fps or None, backend=self.backend,
                                         short_side=d.get("short_side", 256), chunk_frames=d.get("chunk_frames", 32),
                                         threads=d.get("threads", 0), info=job.info)
                    for chunk in prefetch(chunks):
                        for g, ex in zip(gs, exs):
                            job.times[g.name].append(chunk.t)
                            if ex.stateful:
                                job.rows[g.name].append(ex.extract(chunk.frames))
                            else:
                                if g.name not in batchers:
                                    batchers[g.name] = _FrameBatcher(ex, g.name, g.spec.batch_size)
                                batchers[g.name].add(job, chunk.frames)
                except Exception as exc:
                    job.error = exc
                for g in gs:  # decode and encode of this item (and of shared batches that filled meanwhile)
                    job.res.seconds[g.name] = round(time.perf_counter() - t0, 3)
                    if not any(len(t) for t in job.times[g.name]):
                        job.missing[g.name] = "video stream has no decodable frame"
            for b in batchers.values():
                b.flush()

    def _decode_audio(self, job: _Job) -> dict:
        tracks = {}
        for g in job.needs("audio"):
            sr = int(g.spec.sample_rate or 16000)
            if sr not in tracks:
                tracks[sr] = decode_audio(job.item.media, sr, self.plan.decode.get("audio_chunk_s", 10.0))
        return tracks

    def _audio(self, jobs: list[_Job]) -> None:
        for job in jobs:
            if job.audio is None:
                continue
            try:
                t0 = time.perf_counter()
                tracks = job.audio.result()
                for g in job.needs("audio"):
                    track = tracks[int(g.spec.sample_rate or 16000)]
                    if track is None or len(track.wave) == 0:
                        job.missing[g.name] = "audio track has no decodable sample"
                        continue
                    ex = self.extractor(g)
                    ex.begin_item()
                    feats, t = ex.extract(track.wave, track.sample_rate)
                    job.rows[g.name].append(feats)
                    job.times[g.name].append(np.asarray(t, np.float64) + track.start_s)
                    job.res.seconds[g.name] = round(time.perf_counter() - t0, 3)
                job.audio = None  # the waves are no longer needed
            except Exception as exc:
                job.error = exc

    def _text(self, jobs: list[_Job]) -> None:
        wanted = {(g.name, j.item.lang): g for j in jobs for g in j.needs("text")}
        for (name, lang), g in wanted.items():
            users = [j for j in jobs if g in j.needs("text") and j.item.lang == lang]
            texts = [s.text for j in users for s in j.item.segments]
            t0 = time.perf_counter()
            feats = (self.extractor(g).extract(texts, lang) if texts else np.zeros((0, g.spec.dim), np.float32))
            took = time.perf_counter() - t0
            row = 0
            for j in users:  # one encoder call per language for the whole batch, split back per item
                n = len(j.item.segments)
                j.rows[name].append(feats[row:row + n])
                j.times[name].append(np.array([s.start_s for s in j.item.segments], np.float64))
                j.res.seconds[name] = round(took * n / max(1, len(texts)), 3)
                row += n

    def _publish(self, jobs: list[_Job]) -> None:
        for job in jobs:
            item, writer, plan, info = job.item, job.writer, job.plan, job.info
            computed: dict[str, np.ndarray] = {}
            for g in job.todo:
                if g.name in job.missing:
                    continue
                t = np.concatenate(job.times[g.name]) if job.times[g.name] else np.zeros(0)
                rows = (np.concatenate(job.rows[g.name]) if job.rows[g.name]
                        else np.zeros((0, g.spec.dim), np.float32))
                order = np.argsort(t, kind="stable")  # text: segments may be listed out of time order
                computed[g.name] = self._cast(rows)[order]
                writer.write_modality(g.name, computed[g.name], t[order], self.extractor(g).attrs())
            for name in plan.reuse:
                if name not in job.missing:
                    writer.reuse_group(name, self.store.item_path(item.id))
            self._segments_and_labels(item, writer, info.duration_s)
            present = [g.name for g in self.plan.groups if g.name not in job.missing]
            if item.split == "static":  # reused groups already carry their pooled vector
                self._pool(writer, computed)
            writer.publish({
                "source": item.source, "duration_s": info.duration_s, "lang": item.lang,
                "duration_meta_s": item.duration_s, "groups": present, "missing": job.missing,
                "fingerprints": plan.keys, "media": plan.media, "meta_fingerprint": plan.meta_fingerprint,
                "warnings": item.warnings, "split": item.split, "meta": item.meta,
                "media_info": {"width": info.width, "height": info.height, "fps": info.fps,
                               "audio_rate": info.audio_rate, "has_video": info.has_video,
                               "has_audio": info.has_audio},
                "engine_version": __version__, "store_format": STORE_FORMAT,
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            })
            job.res.status, job.res.computed, job.res.reused = "ok", plan.compute, plan.reuse
            job.res.missing = job.missing

    def _segments_and_labels(self, item: Item, writer, duration_s: float) -> None:
        segs = item.segments
        writer.write_array("segments/start", np.array([s.start_s for s in segs], np.float64), ("segment",),
                           {"units": "s"})
        # a static clip's one segment runs "to the end" (inf in discovery, which opens no media): store the end
        ends = [duration_s if np.isinf(s.end_s) else s.end_s for s in segs]
        writer.write_array("segments/end", np.array(ends, np.float64), ("segment",), {"units": "s"})
        writer.write_array("segments/text", np.array([s.text for s in segs], dtype=object), ("segment",))
        for name, arr in item.labels.items():
            dims = ("segment", "label")[:np.ndim(arr)] if name != "turning_points" else ("turning_point",)
            writer.write_array(f"labels/{name}", arr, dims, item.label_attrs.get(name))

    def _pool(self, writer, computed: dict[str, np.ndarray]) -> None:
        """Static clips: one mean-pooled vector per computed modality beside the frame-level rows."""
        for name, arr in computed.items():
            pooled = arr.astype(np.float32).mean(axis=0) if len(arr) else np.zeros(arr.shape[1], np.float32)
            writer.write_array(f"{name}/pooled", self._cast(pooled), ("feature",))
