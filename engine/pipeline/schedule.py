"""Scheduling inside a worker: decode ahead of the encoders."""
from __future__ import annotations

import queue
import threading
from typing import Iterator


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
