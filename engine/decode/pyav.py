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
import re
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
    return info


def display_rotation(path: str) -> int:
    """Counterclockwise display rotation (degrees) of the first video frame, as :class:`_Chunks` applies it to
    every frame. It decodes a frame (PyAV shows no stream side data), so only a decoder that cannot turn frames
    itself (DALI) asks for it."""
    with _open(path) as c:
        if not c.streams.video:
            return 0
        try:
            for frame in c.decode(c.streams.video[0]):
                return int(getattr(frame, "rotation", 0) or 0)
        except Exception:  # nothing decodes: frame decoding reports that, naming the file
            return 0
    return 0


# Codecs whose packets tell, in a byte of their own, that no other frame refers to them, so such a packet can be left
# out and every other frame still decodes to the same pixels: H.264 (a slice with nal_ref_idc 0 is never a
# reference). Not HEVC: its "sub-layer non-reference" pictures may still be references for higher temporal layers.
_SKIPPABLE_CODECS = ("h264",)
_H264_SLICES = (1, 2, 5)  # NAL unit types that carry a picture's slice: non-IDR, data partition A, IDR
_H264_IDR, _H264_SPS = 5, 7
_H264_PARAMETER_SETS = (7, 8, 13, 15)  # SPS, PPS, SPS extension, subset SPS: later pictures may need them
# profiles whose SPS carries chroma format, bit depths and scaling matrices (H.264 7.3.2.1.1)
_H264_HIGH_PROFILES = (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135)


def _nal_length_size(extradata: bytes | None) -> int | None:
    """The size of the length before each NAL unit in an ``avcC`` stream (MP4, MKV); None for Annex B (start
    codes: MPEG-TS, raw ``.h264``)."""
    if extradata and len(extradata) >= 7 and extradata[0] == 1:
        return (extradata[4] & 3) + 1
    return None


def _h264_units(data, length_size: int | None, packet: bool = True) -> list[bytes] | None:
    """The NAL units of an H.264 packet (or, not ``packet``, Annex B extradata), header byte first; None when it
    does not parse as the stream's framing says: length-prefixed units that fill it exactly, or a packet that opens
    with Annex B's four-byte start code (an access unit's first unit has it, H.264 B.1.2; a length-prefixed packet
    read as Annex B would otherwise find a false three-byte start code in a unit's length)."""
    raw = bytes(data)
    units = []
    if length_size:
        i, end = 0, len(raw)
        while i < end:
            n = int.from_bytes(raw[i:i + length_size], "big")
            if n == 0 or i + length_size + n > end:  # a unit that does not fit: not a packet to reason about
                return None
            units.append(raw[i + length_size:i + length_size + n])
            i += length_size + n
    else:
        if not (raw.startswith(b"\x00\x00\x00\x01") or (not packet and raw.startswith(b"\x00\x00\x01"))):
            return None
        i = raw.find(b"\x00\x00\x01")
        while i >= 0:
            j = raw.find(b"\x00\x00\x01", i + 3)
            unit = raw[i + 3:j if j >= 0 else len(raw)].rstrip(b"\x00")  # trailing zeros: the next start code's
            if unit:
                units.append(unit)
            i = j
    if not units or any(u[0] & 0x80 for u in units):  # forbidden_zero_bit set: not H.264 as this reads it
        return None
    return units


def _h264_unreferenced(units: list[bytes]) -> bool:
    """Whether a packet's NAL units hold a picture that no other picture refers to and nothing a later one needs:
    a non-IDR slice, ``nal_ref_idc`` 0 on every unit (a slice of a reference picture and every parameter set have it
    non-zero) and no parameter set."""
    return (any(u[0] & 0x1F in _H264_SLICES for u in units)
            and not any(u[0] & 0x60 or u[0] & 0x1F in _H264_PARAMETER_SETS or u[0] & 0x1F == _H264_IDR
                        for u in units))


class _Bits:
    """Big-endian bit reader over an RBSP, with H.264's Exp-Golomb codes (9.1)."""

    def __init__(self, rbsp: bytes):
        self.v, self.n, self.i = int.from_bytes(rbsp, "big"), len(rbsp) * 8, 0

    def u(self, k: int) -> int:
        if self.i + k > self.n:
            raise ValueError("past the end")
        self.i += k
        return (self.v >> (self.n - self.i)) & ((1 << k) - 1)

    def ue(self) -> int:
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros > 31:
                raise ValueError("an Exp-Golomb code too long")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _h264_sps(unit: bytes) -> dict | None:
    """``max_num_ref_frames`` and ``gaps_in_frame_num_value_allowed_flag`` of an SPS NAL unit (H.264 7.3.2.1.1),
    None when it does not parse."""
    rbsp = re.sub(b"\x00\x00\x03", b"\x00\x00", unit[1:])  # emulation prevention bytes out
    try:
        b = _Bits(rbsp)
        profile = b.u(8)
        b.u(16)  # constraint flags, level
        b.ue()   # seq_parameter_set_id
        if profile in _H264_HIGH_PROFILES:
            chroma = b.ue()
            if chroma == 3:
                b.u(1)
            b.ue(), b.ue(), b.u(1)  # bit depths, qpprime_y_zero_transform_bypass_flag
            if b.u(1):  # seq_scaling_matrix_present_flag
                for k in range(8 if chroma != 3 else 12):
                    if b.u(1):
                        last = nxt = 8
                        for _ in range(16 if k < 6 else 64):
                            if nxt:
                                nxt = (last + b.se() + 256) % 256
                            last = nxt or last
        b.ue()  # log2_max_frame_num_minus4
        poc_type = b.ue()
        if poc_type == 0:
            b.ue()
        elif poc_type == 1:
            b.u(1), b.se(), b.se()
            for _ in range(b.ue()):
                b.se()
        elif poc_type != 2:
            return None
        refs = b.ue()
        return {"max_num_ref_frames": refs, "gaps_in_frame_num_allowed": bool(b.u(1))}
    except ValueError:
        return None


def _avcc_sps(extradata: bytes) -> list[bytes] | None:
    """The SPS NAL units of an ``avcC`` record (ISO 14496-15 5.3.3.1), None when it does not parse."""
    n, i, out = extradata[5] & 0x1F, 6, []
    for _ in range(n):
        size = int.from_bytes(extradata[i:i + 2], "big")
        if size == 0 or i + 2 + size > len(extradata):
            return None
        out.append(extradata[i + 2:i + 2 + size])
        i += 2 + size
    return out


class _H264Gate:
    """Which of a stream's H.264 packets may be left out of a decode without changing another frame.

    A packet is left out only when it is off the grid, carries a non-reference, non-IDR picture and nothing else a
    later picture needs, and every SPS seen so far (in the extradata and in the packets, each packet read whether
    left out or not) forbids gaps in ``frame_num``: where gaps are allowed, FFmpeg fills a gap counting from the last
    picture decoded, so leaving one out would change the reference lists of the pictures after it. A packet or SPS
    that does not parse, or a packet with new extradata (parameter sets this does not read), stops the leaving out
    for the rest of the stream.
    """

    def __init__(self, extradata: bytes | None):
        self.length_size = _nal_length_size(extradata)
        self.ok: bool | None = None  # None: no SPS seen yet
        if self.length_size:
            sps = _avcc_sps(bytes(extradata))
            if sps is None:
                self.ok = False
            for unit in sps or ():
                self._see_sps(unit)
        elif extradata:
            for unit in _h264_units(extradata, None, packet=False) or ():
                if unit[0] & 0x1F == _H264_SPS:
                    self._see_sps(unit)

    def _see_sps(self, unit: bytes) -> None:
        sps = _h264_sps(unit)
        if self.ok is not False:
            self.ok = sps is not None and not sps["gaps_in_frame_num_allowed"]

    def leave_out(self, packet, off_grid: bool) -> bool:
        if self.ok is False:
            return False
        units = _h264_units(packet, self.length_size)
        if units is None:
            self.ok = False
            return False
        has_sidedata = getattr(packet, "has_sidedata", None)  # a PyAV without it: nothing is left out
        if has_sidedata is None or has_sidedata("new_extradata"):  # parameter sets this does not read
            self.ok = False
            return False
        for unit in units:
            if unit[0] & 0x1F == _H264_SPS:
                self._see_sps(unit)
        return bool(off_grid and self.ok and _h264_unreferenced(units))


# Packets demuxed ahead of the decoder: a frame's display interval ends at the next presentation time, which in
# decode order can come up to a few mini-GOPs later (x264's B-pyramid: 2 x (B-frames + 1) packets).
_LOOKAHEAD = 48


_SHORT_S = 20.0  # streams shorter than this decode in one thread when decode.threads is 0 (auto)


def _lasts_s(c, stream) -> float:
    """How long a stream says it lasts (the container's length when it does not say; infinity when neither does)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return c.duration / 1e6 if c.duration is not None else float("inf")


class _Unpredictable(Exception):
    """The stream did something the skipping path cannot prove exact (missing or repeated timestamps, frames out of
    order, a decode error): the caller decodes again without skipping."""


class _Chunks:
    """Converts kept frames into chunks of ``chunk_frames``, in a thread of its own while the decoder goes on (swscale
    runs without the GIL): one swscale context for the whole stream (a frame's own ``reformat`` builds a new one,
    with its threads, every call), pixels written straight into the chunk (no list of arrays stacked)."""

    def __init__(self, chunk_frames: int, short_side: int, upscale: bool = False):
        from concurrent.futures import ThreadPoolExecutor

        from av.video.reformatter import VideoReformatter
        self.n, self.short_side, self.upscale = max(1, chunk_frames), short_side, upscale
        self.reformatter = VideoReformatter()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="frame-convert")
        self.converting: list = []  # futures of the current chunk's conversions
        self.buf: np.ndarray | None = None
        self.t: list[float] = []

    def _convert(self, frame, w: int, h: int, degrees: int, buf: np.ndarray, i: int) -> None:
        # swscale's output does not depend on its thread count (checked); one thread leaves the cores to the decoder
        arr = self.reformatter.reformat(frame, width=w, height=h, format="rgb24", threads=1).to_ndarray()
        # `rotation` is the counterclockwise angle of the display matrix (rare: phones)
        buf[i] = rotate(arr[None], degrees)[0] if degrees else arr

    def add(self, frame, t: float) -> list[FrameChunk]:
        """Convert ``frame`` (shown at ``t``) and return the chunks it completes."""
        w, h = scaled_size(frame.width, frame.height, self.short_side, self.upscale)
        degrees = getattr(frame, "rotation", 0) or 0
        shape = (w, h, 3) if round(degrees / 90) % 2 else (h, w, 3)  # a quarter turn swaps width and height
        done = []
        if self.buf is not None and self.buf.shape[1:] != shape:  # the picture size changed mid-stream
            done.append(self.take())
        if self.buf is None:
            self.buf = np.empty((self.n, *shape), np.uint8)
        self.converting.append(self.pool.submit(self._convert, frame, w, h, degrees, self.buf, len(self.t)))
        self.t.append(t)
        if len(self.t) == self.n:
            done.append(self.take())
        return done

    def take(self) -> FrameChunk:
        """The frames added so far, as a chunk, once converted."""
        for f in self.converting:
            f.result()
        n = len(self.t)
        frames = self.buf if n == len(self.buf) else self.buf[:n].copy()
        chunk = FrameChunk(frames, np.asarray(self.t, dtype=np.float64))
        self.buf, self.t, self.converting = None, [], []
        return chunk

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def iter_frames_pyav(path: str, fps: float | None, short_side: int = 256, chunk_frames: int = 32,
                     threads: int = 0, skip_nonref: bool = True, upscale: bool = False, cores: int = 0,
                     **_) -> Iterator[FrameChunk]:
    """Frames on the ``k / fps`` grid (every frame when ``fps`` is falsy), in chunks, by presentation time.

    ``threads``: the decoder's threads (0: one for a short clip, else ``cores``, the cores of the worker that
    decodes, else FFmpeg's own choice).

    Every frame is decoded, except (``skip_nonref``) H.264 frames that no other frame refers to and that are not
    on the grid: their packets are never sent to the decoder (FFmpeg's own ``skip_frame`` still passes each through
    one of its frame threads, which then holds a slot for nothing). Which frames are on the grid is worked out from
    the packets' timestamps, read a little ahead of the decoder, and checked against every frame that comes out;
    when a stream breaks a rule that this relies on, its frames are decoded again without skipping, from after the
    last one yielded. Either way the frames, their ``t`` and their pixels are those of a full decode.
    """
    last_t = None
    if skip_nonref and fps:
        try:
            for chunk in _frames(path, fps, short_side, chunk_frames, threads, upscale, cores, skip=True):
                yield chunk
                last_t = float(chunk.t[-1])
            return
        except _Unpredictable as why:
            log.debug("%s: decoding again without skipping frames, after t=%s (%s)", path, last_t, why)
    yield from _frames(path, fps, short_side, chunk_frames, threads, upscale, cores, skip=False, after=last_t)


def _frames(path: str, fps: float | None, short_side: int, chunk_frames: int, threads: int, upscale: bool,
            cores: int, skip: bool, after: float | None = None) -> Iterator[FrameChunk]:
    with _open(path) as c:
        if not c.streams.video:
            return
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        elif _lasts_s(c, stream) < _SHORT_S:
            # a short clip: starting and draining frame threads costs more CPU than they save (2x on 2.4 s clips),
            # and a worker already decodes the next clip beside the encoders
            stream.codec_context.thread_count = 1
        elif cores:
            # as many threads as the worker has cores, not FFmpeg's choice (cores + 1 frame threads): a 151 s
            # 640x360 film on 2 cores decoded in 4.8-5.0 s and 8.6-8.9 CPU s on 2 threads, 5.5-5.8 s and 9.0-9.4
            # CPU s on FFmpeg's 3
            stream.codec_context.thread_count = cores
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        chunks = _Chunks(chunk_frames, short_side, upscale)
        try:
            if skip and (stream.codec_context.name in _SKIPPABLE_CODECS and stream.codec_context.has_b_frames
                         and rate and fps * 2 <= rate):
                yield from _frames_skipping(c, stream, fps, chunks)
            else:
                yield from _frames_all(c, stream, path, fps, chunks, after)
        finally:
            chunks.close()


def _frames_all(c, stream, path: str, fps: float | None, chunks: _Chunks,
                after: float | None) -> Iterator[FrameChunk]:
    """Decode every frame; keep those on the grid (shown after ``after``, when given)."""
    tb = float(stream.time_base)
    default_step = 1.0 / float(stream.average_rate) if stream.average_rate else 1.0 / 25
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
                if on_grid(pt, t, fps) and (after is None or pt > after):
                    yield from chunks.add(pf, pt)
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
        if on_grid(pt, pt + dur, fps) and (after is None or pt > after):
            yield from chunks.add(pf, pt)
    if chunks.t:
        yield chunks.take()


def _frames_skipping(c, stream, fps: float, chunks: _Chunks) -> Iterator[FrameChunk]:
    """:func:`_frames_all`'s frames, without decoding the non-reference frames that are off the grid.

    A frame's display interval ends at the next presentation time among all packets, the same end a full decode
    finds in the next frame, as long as every packet's frame comes out of the decoder, in timestamp order: checked
    here frame by frame (anything else raises :class:`_Unpredictable`).
    """
    from bisect import bisect_right, insort
    from collections import deque

    gate = _H264Gate(stream.codec_context.extradata)
    tb = float(stream.time_base)
    default_step = 1.0 / float(stream.average_rate)
    seen: list[int] = []      # every packet's pts so far, sorted
    expected: list[int] = []  # pts of the frames sent without skipping, sorted: each must come out
    queue: deque = deque()     # packets read but not yet decoded
    state = {"horizon": None, "last": None, "complete": False, "n_out": 0}

    def succ(pts: int) -> int | None:
        i = bisect_right(seen, pts)
        return seen[i] if i < len(seen) else None

    def kept(pts: int, frame=None) -> bool:
        nxt = succ(pts)
        if nxt is not None:
            return on_grid(pts * tb, nxt * tb, fps)
        if frame is None:  # the last frame: its length comes from the frame itself, once decoded
            return True
        dur = float(frame.duration * tb) if getattr(frame, "duration", None) else default_step
        return on_grid(pts * tb, pts * tb + dur, fps)

    def received(frame) -> list[FrameChunk]:
        pts = frame.pts
        if pts is None or (state["last"] is not None and pts <= state["last"]):
            raise _Unpredictable("a frame without a timestamp, or out of order")
        i = bisect_right(seen, pts)
        if i == 0 or seen[i - 1] != pts:
            raise _Unpredictable("a frame whose timestamp no packet had")
        if expected and expected[0] < pts:
            raise _Unpredictable("a frame the decoder was not asked to skip did not come out")
        if expected and expected[0] == pts:
            expected.pop(0)
        if succ(pts) is None and not state["complete"]:
            raise _Unpredictable("a frame shown after every packet read so far")
        state["last"], state["n_out"] = pts, state["n_out"] + 1
        return chunks.add(frame, pts * tb) if kept(pts, frame) else []

    def send(packet) -> list[FrameChunk]:
        pts = packet.pts
        nxt = succ(pts)
        if nxt is not None:
            state["horizon"] = nxt if state["horizon"] is None else max(state["horizon"], nxt)
        if gate.leave_out(packet, off_grid=nxt is not None and not kept(pts)):
            return []  # off the grid and referred to by none: the decoder never sees it
        insort(expected, pts)  # sent in decode order, comes out in presentation order
        out = []
        for frame in stream.decode(packet):
            out += received(frame)
        return out

    try:
        for packet in c.demux(stream):
            if packet.size == 0:  # the flushing packet at the end
                continue
            pts = packet.pts
            if pts is None or packet.is_discard or packet.is_corrupt:
                raise _Unpredictable("a packet without a timestamp, or marked discard or corrupt")
            i = bisect_right(seen, pts)
            if i and seen[i - 1] == pts:
                raise _Unpredictable("two packets with one timestamp")
            if state["horizon"] is not None and pts < state["horizon"]:
                raise _Unpredictable("a packet arrived too late for the frames already decided")
            seen.insert(i, pts)
            queue.append(packet)
            if len(queue) > _LOOKAHEAD:
                yield from send(queue.popleft())
        state["complete"] = True
        while queue:
            yield from send(queue.popleft())
        for frame in stream.decode(None):
            yield from received(frame)
    except _Unpredictable:
        raise
    except Exception as exc:  # a decode error: the full decode reports it as it always has
        raise _Unpredictable(f"{type(exc).__name__}: {exc}") from None
    if expected:
        raise _Unpredictable("frames the decoder was not asked to skip did not come out")
    if chunks.t:
        yield chunks.take()
    log.debug("%s: %d of %d frames decoded (the others skipped: off the grid, referred to by none)",
              c.name, state["n_out"], len(seen))


def _mono(parts: list[np.ndarray]) -> np.ndarray:
    """Planar ``[channels, n]`` pieces as one mono float32 signal, the mean of the channels (one numpy call for a
    run of pieces with the same channel count; the same values as piece by piece)."""
    if len({p.shape[0] for p in parts}) == 1:
        return np.concatenate(parts, axis=1).mean(axis=0, dtype=np.float32)
    return np.concatenate([p.mean(axis=0, dtype=np.float32) for p in parts])


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
                emit(rs.push(torch.from_numpy(_mono(pending))).numpy())
                pending, n_pending = [], 0
            if final:
                emit(rs.flush().numpy())

        try:
            for frame in c.decode(stream):
                if start_s is None and frame.pts is not None:
                    start_s = float(frame.pts * stream.time_base)
                # AAC (most films) decodes to planar float already: no conversion then
                for f in ([frame] if frame.format.name == "fltp" else to_float.resample(frame)):
                    x = f.to_ndarray()  # [channels, n] planar float32
                    pending.append(x if x.ndim == 2 else x[None])
                    n_pending += x.shape[-1]
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
    display_rotation = staticmethod(display_rotation)

    @staticmethod
    def available(device: str = "cpu") -> tuple[bool, str]:
        return (True, "") if device == "cpu" else (False, "PyAV decodes on the CPU only")
