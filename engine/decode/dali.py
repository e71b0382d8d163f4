"""The NVIDIA DALI decode backend: ``fn.experimental.readers.video`` on the GPU (NVDEC) or on the CPU.

``decode: {backend: dali, device: gpu}`` decodes with NVDEC; ``device: cpu`` runs the same reader on the CPU,
where DALI decodes VP8, VP9 and MJPEG only. The CPU variant exists so the GPU path can be proven frame for frame
against PyAV on a machine without a GPU (``tests/test_dali.py``, ``python -m engine.selfcheck``).

Same contract as PyAV (``engine/decode/pyav.py``):

- Frames are chosen on the ``k / fps`` grid by :func:`kernels.align.on_grid` from each frame's presentation time
  and the next one's; the last frame lasts as long as its packet says (what PyAV's ``frame.duration`` is), else
  ``1 / average rate``. Repeated or out-of-order times keep the first frame, as in PyAV.
- ``t`` is ``pts * time_base``. The reader's timestamps are exact but count from the stream's first frame; they
  are turned back into integer pts and multiplied by the time base as PyAV does, so a clip whose video starts at
  1.5 s gets the same floats from both backends. Variable frame rate needs nothing more: the times are the
  frames' own.
- The reader walks the file in sequences of ``chunk_frames`` frames (``step`` = sequence length) and the last
  sequence is padded (``pad_mode="constant"``: padded frames carry the time -1 and are dropped), so the last
  partial sequence is kept and the backend holds about two sequences whatever the film's length (DALI's own
  buffers fill up over the first ~30 sequences, then stay: RSS flat across a 600 s clip, see
  ``benchmarks/dali_cpu.py``).
- Each decoded sequence reaches torch through DLPack without a copy, on either device; only the chosen frames are
  resized (:func:`kernels.image.resize_frames`) and turned upright. On the CPU the chunk is a numpy array; on the
  GPU it stays a CUDA tensor, so an encoder on the same GPU reads it without a round trip through host memory.

Pipelines: a DALI reader fixes its file list when its pipeline is built, so a pipeline serves one file, not one
actor. The module keeps the last one per (device, device_id, file, sequence length, threads) and reuses it when
the same file is decoded again (a second frame rate, a retry); the next file's pipeline replaces it. DALI's
operators that take a new file on every run (``fn.decoders.video``, ``fn.experimental.inputs.video``) return no
timestamps, which this contract needs. DALI itself keeps a small frame index per file name for the life of the
process.

A file DALI cannot take (a codec the device does not decode, interlaced video, 4:2:2 or 4:4:4 on NVDEC, or any
DALI error) raises :class:`~engine.decode.types.BackendCannotDecode`; :func:`engine.decode.iter_frames` then
decodes it with PyAV and reports why.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Iterator

import numpy as np

from kernels.align import on_grid

from . import display_rotation, register_backend
from .types import BackendCannotDecode, FrameChunk, MediaInfo, scaled_size

log = logging.getLogger(__name__)

# codecs (ffmpeg names) each variant of the reader decodes, from the DALI 2.4 operator documentation
from .dali_checks import available, cannot_decode, stream_facts


# ------------------------------------------------------------------------------------------------ pipelines
_CACHE: dict[tuple, tuple] = {}  # key -> (pipeline, sequences per pass); at most one entry
_CACHE_LOCK = threading.Lock()


def _build(path: str, device: str, device_id: int | None, sequence_length: int, threads: int):
    from nvidia.dali import fn, pipeline_def

    @pipeline_def(batch_size=1, num_threads=max(1, threads), device_id=device_id if device == "gpu" else None,
                  prefetch_queue_depth=1)
    def reader():
        frames, times = fn.experimental.readers.video(
            device=device, filenames=[path], sequence_length=sequence_length, step=sequence_length,
            enable_timestamps=True, pad_mode="constant", random_shuffle=False, name="video")
        return frames, times

    pipe = reader()
    pipe.build()
    return pipe, int(pipe.reader_meta("video")["epoch_size"])


def _take_pipeline(key: tuple, build):
    """The cached pipeline for ``key`` (removed from the cache while in use), or a new one."""
    with _CACHE_LOCK:
        hit = _CACHE.pop(key, None)
        if hit is None:
            _CACHE.clear()  # one file at a time: the previous file's pipeline will not be asked for again
    return hit or build()


def _give_back(key: tuple, entry: tuple) -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
        _CACHE[key] = entry


# -------------------------------------------------------------------------------------------------- frames
def iter_frames_dali(path: str, fps: float | None, *, info: MediaInfo, short_side: int = 256, chunk_frames: int = 32,
                     threads: int = 0, device: str = "gpu", device_id: int | None = None, upscale: bool = False,
                     **_) -> Iterator[FrameChunk]:
    """Frames on the ``k / fps`` grid (every frame when ``fps`` is falsy), in chunks of ``chunk_frames``.

    ``device`` is ``cpu`` or ``gpu``; ``device_id`` the CUDA device (see :func:`engine.pipeline.runner.device_id`). Raises
    :class:`BackendCannotDecode` where DALI cannot take the file.
    """
    import torch

    from kernels.image import resize_frames, rotate_frames

    facts = stream_facts(path)
    why = cannot_decode(facts, device)
    if why:
        raise BackendCannotDecode(why)
    device_id = (device_id or 0) if device == "gpu" else None
    seq = max(1, int(chunk_frames))
    key = (device, device_id, os.path.abspath(path), _file_stamp(path), seq, threads)
    try:
        pipe, n_seq = _take_pipeline(key, lambda: _build(os.path.abspath(path), device, device_id, seq, threads or 2))
    except Exception as exc:  # DALI refuses the file: say why, PyAV takes it
        raise BackendCannotDecode(f"DALI ({device}) does not open it: {_short(exc)}") from None
    tb = float(facts.time_base)
    # DALI has no display matrix: turn frames upright as PyAV does
    degrees = info.rotation if info is not None and info.rotation is not None else display_rotation(path)
    ready: list = []       # resized chosen frames not yet yielded
    ready_t: list = []
    n_ready = 0
    pending = None         # (frame, t): kept until the next frame tells how long it was on screen

    def emit(frames, times):
        nonlocal n_ready
        if len(times):
            w, h = scaled_size(frames.shape[2], frames.shape[1], short_side, upscale)
            ready.append(rotate_frames(resize_frames(frames, h, w), degrees))
            ready_t.append(np.asarray(times, np.float64))
            n_ready += len(times)

    def chunks(final: bool):
        nonlocal ready, ready_t, n_ready
        if not ready or (n_ready < seq and not final):
            return
        frames, times = torch.cat(ready), np.concatenate(ready_t)
        ready, ready_t, n_ready = [], [], 0
        cut = len(times) if final else len(times) - len(times) % seq
        for i in range(0, cut, seq):
            f = frames[i:i + seq]
            yield FrameChunk(f if device == "gpu" else f.numpy(), times[i:i + seq])
        if cut < len(times):
            ready, ready_t, n_ready = [frames[cut:]], [times[cut:]], len(times) - cut

    for s in range(n_seq):
        try:
            video, stamps = pipe.run()
            frames = torch.from_dlpack(video.as_tensor())[0]  # [F, H, W, 3] uint8, on the pipeline's device
            rel = np.asarray(stamps.as_cpu().as_tensor())[0]  # times: 8 bytes a frame, always on the host
        except Exception as exc:
            raise BackendCannotDecode(f"DALI ({device}) failed in sequence {s + 1} of {n_seq}: {_short(exc)}") from None
        real = np.flatnonzero(rel >= 0)  # padded frames of the last sequence carry -1
        # back to the stream's integer pts, then the very product PyAV computes
        t = (facts.start_pts + np.rint(rel[real] / tb).astype(np.int64)) * tb
        keep, keep_t, carried = [], [], None
        for i, ti in zip(real, t):
            ti = float(ti)
            if pending is not None:
                pf, pt = pending
                if ti <= pt:  # a repeated or out-of-order time: keep the first frame shown
                    continue
                if on_grid(pt, ti, fps):
                    if isinstance(pf, int):
                        keep.append(pf)
                        keep_t.append(pt)
                    else:
                        carried = (pf, pt)
            pending = (int(i), ti)
        if carried is not None:  # the previous sequence's last frame comes first
            emit(carried[0][None], [carried[1]])
        if keep:
            emit(frames[torch.as_tensor(keep, device=frames.device)], keep_t)
        if pending is not None and isinstance(pending[0], int):  # detach it from this sequence's index
            pending = (frames[pending[0]], pending[1])
        yield from chunks(final=False)
    if pending is not None:
        pf, pt = pending
        dur = facts.last_duration_s or facts.default_step_s
        if on_grid(pt, pt + dur, fps):
            emit(pf[None], [pt])
    yield from chunks(final=True)
    _give_back(key, (pipe, n_seq))  # a whole pass was read: the reader stands at the file's start again


def _file_stamp(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def _short(exc: BaseException) -> str:
    """DALI errors carry a C++ stack trace; the first line says what went wrong."""
    text = str(exc).strip().splitlines()
    return next((ln.strip() for ln in text if ln.strip() and "Stacktrace" not in ln), type(exc).__name__)[:300]


@register_backend
class DaliBackend:
    """NVIDIA DALI: NVDEC on the GPU, or its CPU reader (VP8, VP9, MJPEG); frames only (audio goes through PyAV)."""

    name = "dali"
    frames = staticmethod(iter_frames_dali)
    available = staticmethod(available)
