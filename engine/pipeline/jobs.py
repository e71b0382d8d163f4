"""A worker's items while they are computed (:class:`Job`), shared encoder batches, and decode ahead of use."""
from __future__ import annotations

import queue
import threading
from typing import Iterator

import numpy as np

from ..records import Group, Item, ItemResult


class Prefetch:
    """Run an iterator in a background thread, ``depth`` items ahead: decoding overlaps encoding.

    PyAV and torch release the GIL while they work, so the two really run side by side. While it iterates, the
    consumer may ask whether the producer is idle (:meth:`producer_waits`): done, or ahead by a full queue.
    """

    def __init__(self, it: Iterator, depth: int = 2):
        self._it, self._q = it, queue.Queue(maxsize=depth)
        self._done = threading.Event()  # the producer made its last item: what is left waits in the queue
        self._was_full = False          # the queue was full when the consumer asked for the item it holds

    def producer_waits(self) -> bool:
        """Whether the producer had nothing to do when the consumer took its current item: it had made its last
        item, or it was ``depth`` items ahead (it waits until the consumer takes one more)."""
        return self._done.is_set() or self._was_full

    def __iter__(self) -> Iterator:
        q, done, stop = self._q, object(), threading.Event()

        def work():
            try:
                for x in self._it:
                    if stop.is_set():
                        return
                    q.put(x)
                self._done.set()
                q.put(done)
            except BaseException as exc:  # hand the error to the consumer
                self._done.set()
                q.put(exc)

        th = threading.Thread(target=work, daemon=True, name="decode-prefetch")
        th.start()
        try:
            while True:
                self._was_full = q.full()
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
        """Rows of ``group`` and their times in seconds from the media's start (the one place times are stored).
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
