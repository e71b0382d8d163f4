"""What DALI can decode here and of a file, decided before a pipeline is built (for ``auto`` and the fallback)."""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from fractions import Fraction

from .types import BackendCannotDecode

CODECS = {"cpu": frozenset({"vp8", "vp9", "mjpeg"}),
          "gpu": frozenset({"vp8", "vp9", "mjpeg", "av1", "mpeg4", "h264", "hevc"})}
NVDEC_LIBRARY = "libnvcuvid.so.1"
_INTERLACED = {2, 3, 4, 5, "tt", "bb", "tb", "bt"}  # AVFieldOrder values PyAV reports (int or name)


def available(device: str = "gpu") -> tuple[bool, str]:
    """Whether DALI can decode on ``device`` here, and if not, why."""
    if device not in CODECS:
        return False, f"decode.device must be cpu or gpu, not {device!r}"
    try:
        import nvidia.dali  # noqa: F401
    except Exception:
        return False, "nvidia-dali is not installed (pip install -e .[gpu])"
    if device == "cpu":
        return True, ""
    try:
        import torch
        if not torch.cuda.is_available():
            return False, "CUDA is not available"
    except Exception as exc:  # pragma: no cover - torch always imports in a worker
        return False, f"torch: {exc}"
    try:
        ctypes.CDLL(NVDEC_LIBRARY)
    except OSError:
        return False, f"the NVDEC library ({NVDEC_LIBRARY}) does not load: the driver has no video decoder"
    return True, ""


@dataclass
class StreamFacts:
    """What the backend needs from the container beyond :class:`MediaInfo`, read by demuxing only."""

    codec: str
    pix_fmt: str
    interlaced: bool
    time_base: Fraction
    start_pts: int
    last_duration_s: float  # how long the last frame is shown (0: unknown)
    default_step_s: float   # 1 / average rate, PyAV's fallback for the last frame


def stream_facts(path: str) -> StreamFacts:
    """Codec, time base, first pts and the last frame's duration of the first video stream (no decoding)."""
    import av
    try:
        c = av.open(path, metadata_errors="ignore")
    except Exception as exc:
        raise BackendCannotDecode(f"the container does not open ({exc})") from None
    with c:
        if not c.streams.video:
            raise BackendCannotDecode("no video stream")
        s = c.streams.video[0]
        cc = s.codec_context
        tb = s.time_base or Fraction(1, 1000)
        step = 1.0 / float(s.average_rate) if s.average_rate else 1.0 / 25
        facts = StreamFacts(codec=cc.name or "", pix_fmt=cc.pix_fmt or "", interlaced=cc.field_order in _INTERLACED,
                            time_base=tb, start_pts=int(s.start_time or 0), last_duration_s=0.0,
                            default_step_s=step)
        # the shown-last frame is the packet with the largest pts: read the tail (from the keyframe before it)
        if c.duration:
            try:
                c.seek(max(0, c.duration - 5_000_000), backward=True)  # AV_TIME_BASE units
            except Exception:  # not seekable: read it all, demuxing is cheap
                c.seek(0)
        last = None
        for pkt in c.demux(s):
            if pkt.pts is not None and (last is None or pkt.pts >= last[0]):
                last = (pkt.pts, pkt.duration)
        if last and last[1]:
            facts.last_duration_s = float(last[1] * tb)
    return facts


def cannot_decode(facts: StreamFacts, device: str) -> str:
    """Why the reader on ``device`` cannot be trusted with this stream ("" when it can)."""
    if facts.codec not in CODECS[device]:
        return f"DALI on the {device} does not decode {facts.codec or 'this codec'}"
    if facts.interlaced:
        return "interlaced video (DALI does not return fields as PyAV does)"
    if device == "gpu" and not any(k in facts.pix_fmt for k in ("420", "nv12", "p010", "p016")):
        return f"NVDEC decodes 4:2:0 only, not {facts.pix_fmt}"
    return ""
