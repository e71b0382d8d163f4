"""Scheduling inside a worker: per-modality runs over a batch of items, with decode ahead of the encoders.

Items of a batch share encoder calls: text of all items goes to the text encoder at once, frames of several items
fill the batches of stateless visual encoders, and the frames of the next item are decoded (in a background
thread) while the current ones are encoded. Every row's time is assigned by these runs, through
:meth:`~engine.pipeline.jobs.Job.add`, and nowhere else. Each item still fails alone.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..decode import decode_audio, iter_frames
from ..errors import MediaError
from .jobs import FrameBatcher, Job, Prefetch


def check_span(job: Job, kind: str, first_s: float, last_s: float, tolerance_s: float) -> None:
    """Fail the item when decoding stopped well before the media claims to end (a damaged file)."""
    info = job.info
    claimed = (info.video_end_s if kind == "video" else info.audio_end_s) or info.duration_s
    if claimed - last_s > tolerance_s:
        raise MediaError(f"{kind} decoded up to {last_s:.2f}s but the file says it lasts until {claimed:.2f}s: "
                         f"the file is damaged (tolerance {tolerance_s:g}s)", file=job.item.media)


def run_visual(jobs: list[Job], extractor: Callable, decode: dict, backend: str, tolerance_s: float,
               after_item: Callable[[Job], None] | None = None, wide_threads: int = 0,
               may_widen: Callable[[], bool] | None = None) -> None:
    """Decode each item's frames on each visual rate's grid, in a background thread, and encode them.

    ``after_item(job)`` is called once an item's frames are all decoded (the decoder goes on with the next ones):
    the caller's chance to do other work of the same thread between items. While the decoder waits (it is a full
    queue ahead of the encoders, or done), the stateless encoders may use ``wide_threads`` (the worker's threads;
    0: never widened) instead of their share: small pictures decode faster than one model thread encodes them, and
    the decoder's cores would idle. They are narrowed when the decoder works again, when ``may_widen()`` says no
    (the worker still loads its other models: their core is not idle), and when the run ends.
    """
    for fps in sorted({g.spec.fps or 0.0 for j in jobs for g in j.needs("visual")}):
        batchers: dict[str, FrameBatcher] = {}
        try:
            _run_rate(jobs, fps, extractor, decode, backend, tolerance_s, after_item, wide_threads, batchers,
                      may_widen)
        finally:
            if wide_threads:
                for b in batchers.values():
                    b.ex.use_threads(None)


def _run_rate(jobs: list[Job], fps: float, extractor: Callable, decode: dict, backend: str, tolerance_s: float,
              after_item, wide_threads: int, batchers: dict[str, FrameBatcher],
              may_widen: Callable[[], bool] | None = None) -> None:
    todo = [(j, [g for g in j.needs("visual") if (g.spec.fps or 0.0) == fps]) for j in jobs]
    todo = [(j, gs) for j, gs in todo if gs]
    may_widen = may_widen or (lambda: True)

    def chunks():  # (job, chunk or None at the end of the item, or the item's decode error)
        for job, _ in todo:
            try:
                for chunk in iter_frames(job.item.media, fps or None, backend=backend, info=job.info,
                                         short_side=decode.get("short_side", 256),
                                         upscale=decode.get("upscale", False),
                                         chunk_frames=decode.get("chunk_frames", 32),
                                         threads=decode.get("threads", 0), cores=decode.get("cores", 0),
                                         device=decode.get("device", "cpu"),
                                         device_id=decode.get("device_id", 0), on_fallback=job.fell_back):
                    yield job, chunk
            except Exception as exc:
                yield job, exc
            yield job, None

    started = {id(j): None for j, _ in todo}
    gs_of = {id(j): gs for j, gs in todo}
    feed, wide = Prefetch(chunks()), False
    for job, chunk in feed:
        if wide_threads and (feed.producer_waits() and may_widen()) != wide:
            wide = not wide
            for b in batchers.values():
                b.ex.use_threads(wide_threads if wide else None)
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
            if after_item is not None:
                after_item(job)
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
                        if wide:
                            ex.use_threads(wide_threads)
                    batchers[g.name].add(job, chunk.frames)
            except Exception as exc:
                job.error = job.error or exc
    for b in batchers.values():
        if wide_threads and may_widen():  # the last frames: the decoder is done
            b.ex.use_threads(wide_threads)
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
