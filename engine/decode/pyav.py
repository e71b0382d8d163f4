"""The PyAV decode backend (CPU): frames on a time grid, audio as mono float32.

PyAV (bundled ffmpeg). Frames are chosen on the presentation-timestamp grid ``k / fps`` (see
:func:`kernels.align.on_grid`) and only the chosen frames are converted to RGB, scaled by swscale in the same pass.
Video is yielded in chunks of ``chunk_frames`` so memory does not grow with film length; audio is decoded and
resampled in pieces (:class:`kernels.audio.ChunkedResampler`) to mono float32.

Times: ``t`` is the stream presentation time in seconds (``pts * time_base``), the clock on which EmoS sentence
timestamps are given for clips that start at zero. Every ``t`` the engine stores comes from here.
"""
from __future__ import annotations

import logging
import os
from typing import Iterator

import numpy as np

from kernels.align import on_grid

from ..errors import MediaError
from . import register_backend
from .types import AudioTrack, FrameChunk, MediaInfo, rotate, scaled_size

log = logging.getLogger(__name__)


def _open(path: str):
    import av
    if not os.path.exists(path):
        raise MediaError("media file not found", file=path)
    if os.path.getsize(path) == 0:
        raise MediaError("media file is empty (0 bytes)", file=path)
    try:
        return av.open(path, metadata_errors="ignore")
    except Exception as exc:  # av.error.* (InvalidDataError, ...)
        why = getattr(exc, "strerror", None) or str(exc)  # PyAV's str() repeats the path
        raise MediaError(f"not a readable media file ({why})", file=path) from None


def probe(path: str) -> MediaInfo:
    """Stream facts without decoding. Raises :class:`MediaError` for files that do not open as media."""
    with _open(path) as c:
        v = c.streams.video[0] if c.streams.video else None
        a = c.streams.audio[0] if c.streams.audio else None
        if v is None and a is None:
            raise MediaError("no video or audio stream", file=path)
        # duration = where the media timeline ends (a stream may start after zero)
        dur = None
        if c.duration is not None:
            dur = c.duration / 1e6 + max(0.0, (c.start_time or 0) / 1e6)
        for s in (v, a):
            if s is not None and s.duration is not None and s.time_base is not None:
                end = float((s.duration + (s.start_time or 0)) * s.time_base)
                dur = end if dur is None else max(dur, end)
        info = MediaInfo(path=path, duration_s=float(dur or 0.0), has_video=v is not None, has_audio=a is not None)
        starts = [float(s.start_time * s.time_base) for s in (v, a)
                  if s is not None and s.start_time is not None and s.time_base is not None]
        info.start_s = max(0.0, min(starts)) if starts else 0.0
        ends = {}
        for kind, s in (("video", v), ("audio", a)):
            if s is not None and s.duration is not None and s.time_base is not None:
                ends[kind] = float((s.duration + (s.start_time or 0)) * s.time_base)
        info.video_end_s, info.audio_end_s = ends.get("video"), ends.get("audio")
        if v is not None:
            info.width, info.height = v.codec_context.width, v.codec_context.height
            rate = v.average_rate or v.guessed_rate
            info.fps = float(rate) if rate else None
            info.video_codec = v.codec_context.name or ""
            info.n_frames = int(v.frames or 0)
            if v.start_time is not None and v.time_base is not None:
                info.video_start_s = float(v.start_time * v.time_base)
        if a is not None:
            info.audio_rate, info.audio_channels = a.codec_context.sample_rate, a.codec_context.channels
    if info.has_video:
        info.rotation = display_rotation(path)
    return info


def display_rotation(path: str) -> int:
    """Counterclockwise display rotation (degrees) of the first video frame: what :func:`_rgb` applies."""
    with _open(path) as c:
        if not c.streams.video:
            return 0
        try:
            for frame in c.decode(c.streams.video[0]):
                return int(getattr(frame, "rotation", 0) or 0)
        except Exception:  # nothing decodes: frame decoding reports that, naming the file
            return 0
    return 0


def _rgb(frame, short_side: int) -> np.ndarray:
    w, h = scaled_size(frame.width, frame.height, short_side)
    arr = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
    # `rotation` is the counterclockwise angle of the display matrix; np.rot90 turns counterclockwise
    return rotate(arr[None], getattr(frame, "rotation", 0) or 0)[0]


def iter_frames_pyav(path: str, fps: float | None, short_side: int = 256, chunk_frames: int = 32,
                     threads: int = 0, **_) -> Iterator[FrameChunk]:
    """Frames on the ``k / fps`` grid (every frame when ``fps`` is falsy), in chunks, by presentation time."""
    with _open(path) as c:
        if not c.streams.video:
            return
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        tb = float(stream.time_base)
        default_step = 1.0 / float(stream.average_rate) if stream.average_rate else 1.0 / 25
        frames, times = [], []
        pending = None  # the previous frame: kept until the next one tells how long it was on screen
        try:
            for frame in c.decode(stream):
                if frame.pts is None:
                    continue
                t = frame.pts * tb
                if pending is not None:
                    pf, pt = pending
                    if t <= pt:  # out-of-order or duplicate timestamp: keep the first one shown
                        continue
                    if on_grid(pt, t, fps):
                        frames.append(_rgb(pf, short_side))
                        times.append(pt)
                        if len(frames) >= chunk_frames:
                            yield FrameChunk(np.stack(frames), np.asarray(times, dtype=np.float64))
                            frames, times = [], []
                pending = (frame, t)
        except MediaError:
            raise
        except Exception as exc:
            if pending is None:
                raise MediaError(f"video does not decode ({type(exc).__name__}: {exc})", file=path) from None
            # a truncated file: keep what decoded, say so
            log.warning("%s: video decoding stopped early at %.2fs (%s)", path, pending[1], exc)
        if pending is not None:
            pf, pt = pending
            dur = float(pf.duration * tb) if getattr(pf, "duration", None) else default_step
            if on_grid(pt, pt + dur, fps):
                frames.append(_rgb(pf, short_side))
                times.append(pt)
        if frames:
            yield FrameChunk(np.stack(frames), np.asarray(times, dtype=np.float64))


def decode_audio(path: str, sample_rate: int, chunk_s: float = 10.0) -> AudioTrack | None:
    """The first audio stream as mono float32 at ``sample_rate`` (None when the file has no audio).

    Channels are averaged; resampling uses torchaudio's sinc resampler, piece by piece.
    """
    import av
    import torch

    from kernels.audio import ChunkedResampler

    with _open(path) as c:
        if not c.streams.audio:
            return None
        stream = c.streams.audio[0]
        src_rate = stream.codec_context.sample_rate or sample_rate
        to_float = av.AudioResampler(format="fltp", layout=None, rate=None)  # sample format only
        rs = ChunkedResampler(src_rate, sample_rate)
        # the output grows in place (no list of pieces concatenated at the end: that held the track twice)
        est = (stream.duration * stream.time_base if stream.duration else (c.duration or 0) / 1e6) or 60.0
        out = np.empty(int(float(est) * sample_rate * 1.02) + sample_rate, np.float32)
        n_out = 0
        pending, n_pending = [], 0
        start_s = None
        chunk_n = int(chunk_s * src_rate)

        def emit(x: np.ndarray):
            nonlocal out, n_out
            if n_out + len(x) > len(out):
                out = np.resize(out, max(2 * len(out), n_out + len(x)))
            out[n_out:n_out + len(x)] = x
            n_out += len(x)

        def push(final=False):
            nonlocal pending, n_pending
            if pending:
                emit(rs.push(torch.from_numpy(np.concatenate(pending))).numpy())
                pending, n_pending = [], 0
            if final:
                emit(rs.flush().numpy())

        try:
            for frame in c.decode(stream):
                if start_s is None and frame.pts is not None:
                    start_s = float(frame.pts * stream.time_base)
                for f in to_float.resample(frame):
                    x = f.to_ndarray()  # [channels, n] planar float32
                    pending.append(x.mean(axis=0, dtype=np.float32) if x.ndim == 2 else x.astype(np.float32))
                    n_pending += pending[-1].shape[-1]
                if n_pending >= chunk_n:
                    push()
        except Exception as exc:
            if start_s is None:
                raise MediaError(f"audio does not decode ({type(exc).__name__}: {exc})", file=path) from None
            log.warning("%s: audio decoding stopped early (%s)", path, exc)
        push(final=True)
        return AudioTrack(wave=out[:n_out], sample_rate=sample_rate, start_s=start_s or 0.0)


@register_backend
class PyAVBackend:
    """CPU decoding through PyAV's bundled ffmpeg: every codec, frames and audio."""

    name = "pyav"
    frames = staticmethod(iter_frames_pyav)
    audio = staticmethod(decode_audio)
    probe = staticmethod(probe)

    @staticmethod
    def available(device: str = "cpu") -> tuple[bool, str]:
        return (True, "") if device == "cpu" else (False, "PyAV decodes on the CPU only")
