"""Writing small real media with PyAV (H.264 + AAC in mp4; VP8, VP9 or MJPEG on request): the demo corpus and the
tests make theirs here.

>>> write_media("/tmp/x.mp4", 2.0, frame_fn=lambda t: solid(64, 48, int(t * 100)))   # doctest: +SKIP
>>> write_media("/tmp/x.webm", 2.0, codec="libvpx-vp9", container="webm")              # doctest: +SKIP
"""
from __future__ import annotations

from fractions import Fraction
from typing import Callable, Sequence

import numpy as np

TIME_BASE = Fraction(1, 1000)  # ms pts: exact for the frame times tests choose


def solid(width: int, height: int, level: int) -> np.ndarray:
    """A uniform grey RGB frame."""
    return np.full((height, width, 3), np.clip(level, 0, 255), np.uint8)


def tone(freq_hz: float, amp: float = 0.3) -> Callable[[np.ndarray], np.ndarray]:
    return lambda t: (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


INDEX_BITS = 10  # frames 0..1023 can be told apart


def indexed_frame(index: int, width: int = 96, height: int = 64) -> np.ndarray:
    """A test picture that carries ``index``: colour ramps (so resizing and colour conversion show) under a row of
    light or dark squares, one per bit, that survive lossy codecs and scaling (read back by :func:`frame_index`).
    The layout is proportional to the width, so any size and any short-side scaling reads back."""
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = xx * 255 // max(1, width - 1)
    img[..., 1] = yy * 255 // max(1, height - 1)
    img[..., 2] = 96
    cell = width / (INDEX_BITS + 2)
    for b in range(INDEX_BITS):
        x0 = (b + 1) * cell
        img[int(cell * 0.15): int(cell * 0.95), int(x0 + cell * 0.1): int(x0 + cell * 0.9)] = \
            235 if (index >> b) & 1 else 20
    return img


def frame_index(img: np.ndarray) -> int:
    """The index an :func:`indexed_frame` carries, read from a decoded picture ``[H, W, 3]`` of any size."""
    h, w = img.shape[:2]
    cell = w / (INDEX_BITS + 2)
    y = min(h - 1, int(cell * 0.55))
    value = 0
    for b in range(INDEX_BITS):
        x = min(w - 1, int((b + 1.5) * cell))
        if img[y, x].astype(np.float32).mean() > 128:
            value |= 1 << b
    return value


def write_media(path: str, duration_s: float, fps: float = 25.0, size: tuple[int, int] = (160, 120),
                frame_fn: Callable[[float], np.ndarray] | None = None,
                audio_fn: Callable[[np.ndarray], np.ndarray] | None = None, audio_rate: int = 44100,
                audio_s: float | None = None, frame_times: Sequence[float] | None = None,
                video: bool = True, codec: str = "libx264", container: str = "mp4") -> None:
    """Write a video file (H.264 in mp4 by default). ``frame_times`` (seconds) gives explicit, possibly variable,
    presentation times; by default frames sit at ``k / fps``. ``audio_fn(t)`` maps sample times to mono samples;
    ``audio_s`` lets the audio be longer or shorter than the video (see :func:`set_rotation` for rotated media).
    ``codec`` ``libvpx-vp9``, ``libvpx`` (VP8) or ``mjpeg`` with ``container`` ``webm``, ``matroska`` or ``mp4``
    make media that DALI's CPU decoder reads as well."""
    import av

    w, h = size
    frame_fn = frame_fn or (lambda t: solid(w, h, 128))
    times = list(frame_times) if frame_times is not None else [k / fps for k in range(int(round(duration_s * fps)))]
    with av.open(path, "w", format=container) as c:
        vs = None
        if video:
            vs = c.add_stream(codec, rate=int(round(fps)))
            # 4:2:0 needs even sizes; odd sizes are written in 4:4:4 (H.264 High 4:4:4)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
            vs.time_base = TIME_BASE
            vs.codec_context.time_base = TIME_BASE
            vs.options = _CODEC_OPTIONS.get(codec, {})
            if codec == "mjpeg":
                vs.pix_fmt = "yuvj420p"  # full-range 4:2:0, what the MJPEG encoder takes
        aus = None
        if audio_fn is not None:
            aus = c.add_stream("aac", rate=audio_rate, layout="mono")
        if vs is not None:
            for t in times:
                img = frame_fn(t)
                fr = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                fr.pts = int(round(t / TIME_BASE))
                fr.time_base = TIME_BASE
                for pkt in vs.encode(fr):
                    c.mux(pkt)
            for pkt in vs.encode():
                c.mux(pkt)
        if aus is not None:
            n = int(round((audio_s if audio_s is not None else duration_s) * audio_rate))
            step = 1024
            for i in range(0, n, step):
                t = (np.arange(i, min(n, i + step)) / audio_rate)
                samples = audio_fn(t).astype(np.float32)[None, :]
                af = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                af.sample_rate = audio_rate
                af.pts = i
                af.time_base = Fraction(1, audio_rate)
                for pkt in aus.encode(af):
                    c.mux(pkt)
            for pkt in aus.encode():
                c.mux(pkt)


# fast settings: test media is small and made in the test
_CODEC_OPTIONS = {"libx264": {"preset": "ultrafast", "tune": "zerolatency", "bf": "0"},
                  "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
                  "libvpx": {"deadline": "realtime", "cpu-used": "8"}}

_IDENTITY = bytes.fromhex("00010000" "00000000" "00000000" "00000000" "00010000" "00000000" "00000000" "00000000"
                          "40000000")


def set_rotation(path: str, degrees: int) -> None:
    """Write a display-matrix rotation into the video track header (``tkhd``) of an mp4, as phones do.

    PyAV cannot set it when writing; the matrix is a fixed field of the box, so it is patched in place.
    ``degrees`` is counterclockwise, as PyAV's ``VideoFrame.rotation`` reports it (90, 180 or 270).
    """
    import math
    c, s = round(math.cos(math.radians(degrees))), round(math.sin(math.radians(degrees)))
    fx = lambda v: (v * 0x10000) & 0xFFFFFFFF  # noqa: E731  16.16 fixed point, two's complement
    # ffmpeg reads the tkhd matrix transposed into its display matrix: [a b; c d] = [cos sin; -sin cos]
    matrix = b"".join(x.to_bytes(4, "big") for x in (fx(c), fx(-s), 0, fx(s), fx(c), 0, 0, 0, 0x40000000))
    data = bytearray(open(path, "rb").read())
    box = data.find(b"tkhd")
    at = data.find(_IDENTITY, box)
    if box < 0 or at < 0 or at - box > 96:
        raise ValueError(f"{path}: no video track header with an identity matrix")
    data[at:at + 36] = matrix
    with open(path, "wb") as fh:
        fh.write(data)
