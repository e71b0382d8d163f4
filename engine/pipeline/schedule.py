"""Scheduling inside a worker: per-modality runs over a batch of items, with decode ahead of the encoders.

Items of a batch share encoder calls: text of all items goes to the text encoder at once, frames of several items
fill the batches of stateless visual encoders, and the frames of the next item are decoded (in a background
thread) while the current ones are encoded. Every row's time is assigned here, in :meth:`Job.add`, and nowhere
else. Each item still fails alone.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterator

import numpy as np

from ..decode import decode_audio, iter_frames
from ..errors import MediaError
from ..records import Group, Item, ItemResult


def prefetch(it: Iterator, depth: int = 2) -> Iterator:
    """Run an iterator in a background thread, ``depth`` items ahead: decoding overlaps encoding.

    PyAV and torch release the GIL while they work, so the two really run side by side.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for x in it:
                if stop.is_set():
                    return
                q.put(x)
            q.put(done)
        except BaseException as exc:  # hand the error to the consumer
            q.put(exc)

    th = threading.Thread(target=work, daemon=True, name="decode-prefetch")
    th.start()
    try:
        while True:
            x = q.get()
            if x is done:
                return
            if isinstance(x, BaseException):
                raise x
            yield x
    finally:
        stop.set()
        while th.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                th.join(0.05)


class Job:
    """One item while it is computed: what to do, the rows made so far, and whether it failed."""

    def __init__(self, item: Item, res: ItemResult, plan, info, todo: list[Group], missing: dict[str, str]):
        self.item, self.res, self.plan, self.info, self.todo = item, res, plan, info, todo
        self.missing = dict(missing)
        self.rows: dict[str, list[np.ndarray]] = {g.name: [] for g in todo}
        self.times: dict[str, list[np.ndarray]] = {g.name: [] for g in todo}
        self.audio = None  # future of {sample_rate: AudioTrack | None}
        self.error: BaseException | None = None
        self.fallback: str | None = None  # why the configured decoder could not take this file (PyAV did)

    def fell_back(self, why: str) -> None:
        self.fallback = why
        self.res.warnings.append(f"video decoded with PyAV: {why}")

    def needs(self, modality: str) -> list[Group]:
        return [g for g in self.todo if g.modality == modality and g.name not in self.missing]

    def add(self, group: str, rows: np.ndarray | None, t: np.ndarray) -> None:
        """Rows of ``group`` and their times in seconds from the media's start (the one place times are set).
        ``rows`` None: the rows come later from a shared batch (:class:`FrameBatcher`), in this order."""
        self.times[group].append(np.asarray(t, np.float64))
        if rows is not None:
            self.rows[group].append(rows)

    def result(self, group: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        t = np.concatenate(self.times[group]) if self.times[group] else np.zeros(0)
        rows = np.concatenate(self.rows[group]) if self.rows[group] else np.zeros((0, dim), np.float32)
        if len(rows) != len(t):
            raise RuntimeError(f"{self.item.id}/{group}: {len(rows)} rows for {len(t)} times")
        order = np.argsort(t, kind="stable")
        return rows[order], t[order]


class FrameBatcher:
    """Feeds a stateless visual extractor full batches drawn from several items, and routes rows back."""

    def __init__(self, ex, group: str, size: int):
        self.ex, self.group, self.size = ex, group, max(1, size)
        self.pending: list[tuple[Job, np.ndarray]] = []
        self.n = 0

    def add(self, job: Job, frames: np.ndarray) -> None:
        if self.pending and tuple(self.pending[-1][1].shape[1:]) != tuple(frames.shape[1:]):
            self.flush()  # clips of another aspect ratio: a batch holds frames of one size
        self.pending.append((job, frames))
        self.n += len(frames)
        if self.n >= self.size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending, self.n = self.pending, [], 0
        try:
            out = self.ex.extract(concat_frames([f for _, f in pending]))
        except Exception as exc:  # an encoder failing on a shared batch fails the items whose frames it held
            for job, _ in pending:
                job.error = job.error or exc
            return
        row = 0
        for job, frames in pending:
            job.rows[self.group].append(out[row:row + len(frames)])
            row += len(frames)


def concat_frames(parts: list):
    """Frames of several chunks as one batch: numpy from CPU decoders, a device tensor where a GPU decoder gave
    one (kept on its device; a file that fell back to PyAV mixes in numpy frames, moved there too)."""
    tensors = [p for p in parts if not isinstance(p, np.ndarray)]
    if not tensors:
        return np.concatenate(parts)
    import torch

    from kernels.image import as_frames
    return torch.cat([as_frames(p, tensors[0].device) for p in parts])


def check_span(job: Job, kind: str, first_s: float, last_s: float, tolerance_s: float) -> None:
    """Fail the item when decoding stopped well before the media claims to end (a damaged file)."""
    info = job.info
    claimed = (info.video_end_s if kind == "video" else info.audio_end_s) or info.duration_s
    if claimed - last_s > tolerance_s:
        raise MediaError(f"{kind} decoded up to {last_s:.2f}s but the file says it lasts until {claimed:.2f}s: "
                         f"the file is damaged (tolerance {tolerance_s:g}s)", file=job.item.media)


def run_visual(jobs: list[Job], extractor: Callable, decode: dict, backend: str, tolerance_s: float) -> None:
    """Decode each item's frames on each visual rate's grid, in a background thread, and encode them."""
    for fps in sorted({g.spec.fps or 0.0 for j in jobs for g in j.needs("visual")}):
        batchers: dict[str, FrameBatcher] = {}
        todo = [(j, [g for g in j.needs("visual") if (g.spec.fps or 0.0) == fps]) for j in jobs]
        todo = [(j, gs) for j, gs in todo if gs]

        def chunks():  # (job, chunk or None at the end of the item, or the item's decode error)
            for job, _ in todo:
                try:
                    for chunk in iter_frames(job.item.media, fps or None, backend=backend, info=job.info,
                                             short_side=decode.get("short_side", 256),
                                             chunk_frames=decode.get("chunk_frames", 32),
                                             threads=decode.get("threads", 0), device=decode.get("device", "cpu"),
                                             device_id=decode.get("device_id", 0), on_fallback=job.fell_back):
                        yield job, chunk
                except Exception as exc:
                    yield job, exc
                yield job, None

        started = {id(j): None for j, _ in todo}
        gs_of = {id(j): gs for j, gs in todo}
        for job, chunk in prefetch(chunks()):
            gs = gs_of[id(job)]
            if started[id(job)] is None:
                started[id(job)] = time.perf_counter()
                for g in gs:
                    extractor(g).begin_item()
            if isinstance(chunk, BaseException):
                job.error = job.error or chunk
                continue
            if chunk is None:  # the item's frames are all decoded
                took = round(time.perf_counter() - started[id(job)], 3)
                for g in gs:
                    job.res.seconds[g.name] = took
                    if not any(len(t) for t in job.times[g.name]):
                        job.missing[g.name] = "video stream has no decodable frame"
                if job.error is None and any(len(t) for t in job.times[gs[0].name]):
                    t_all = np.concatenate(job.times[gs[0].name])
                    step = 1.0 / fps if fps else 0.0
                    try:
                        check_span(job, "video", float(t_all[0]), float(t_all[-1]) + step, tolerance_s)
                    except MediaError as exc:
                        job.error = exc
                continue
            if job.error is not None:
                continue
            for g in gs:
                ex = extractor(g)
                try:
                    if ex.stateful:
                        job.add(g.name, ex.extract(chunk.frames), chunk.t)
                    else:
                        job.add(g.name, None, chunk.t)
                        if g.name not in batchers:
                            batchers[g.name] = FrameBatcher(ex, g.name, g.spec.batch_size)
                        batchers[g.name].add(job, chunk.frames)
                except Exception as exc:
                    job.error = job.error or exc
        for b in batchers.values():
            b.flush()


def decode_audio_tracks(job: Job, chunk_s: float) -> dict:
    tracks = {}
    for g in job.needs("audio"):
        sr = int(g.spec.sample_rate or 16000)
        if sr not in tracks:
            tracks[sr] = decode_audio(job.item.media, sr, chunk_s)
    return tracks


def run_audio(jobs: list[Job], extractor: Callable, tolerance_s: float) -> None:
    for job in jobs:
        if job.audio is None:
            continue
        try:
            t0 = time.perf_counter()
            tracks = job.audio.result()
            job.audio = None  # the waves are no longer needed once encoded
            for g in job.needs("audio"):
                track = tracks[int(g.spec.sample_rate or 16000)]
                if track is None or len(track.wave) == 0:
                    job.missing[g.name] = "audio track has no decodable sample"
                    continue
                check_span(job, "audio", track.start_s, track.start_s + track.duration_s, tolerance_s)
                ex = extractor(g)
                ex.begin_item()
                feats, t = ex.extract(track.wave, track.sample_rate)
                job.add(g.name, feats, np.asarray(t, np.float64) + track.start_s)
                job.res.seconds[g.name] = round(time.perf_counter() - t0, 3)
        except Exception as exc:
            job.error = job.error or exc


def run_text(jobs: list[Job], extractor: Callable) -> None:
    """One encoder call per language for all the items given, split back per item."""
    wanted = {(g.name, j.item.lang): g for j in jobs for g in j.needs("text")}
    for (name, lang), g in wanted.items():
        users = [j for j in jobs if g in j.needs("text") and j.item.lang == lang]
        texts = [s.text for j in users for s in j.item.segments]
        t0 = time.perf_counter()
        try:
            feats = (extractor(g).extract(texts, lang) if texts else np.zeros((0, g.spec.dim), np.float32))
        except Exception as exc:
            for j in users:
                j.error = j.error or exc
            continue
        took = time.perf_counter() - t0
        row = 0
        for j in users:
            n = len(j.item.segments)
            j.add(name, feats[row:row + n], np.array([s.start_s for s in j.item.segments], np.float64))
            j.res.seconds[name] = round(took * n / max(1, len(texts)), 3)
            row += n
