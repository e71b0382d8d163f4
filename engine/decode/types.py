"""What every decode backend hands back, and the small helpers they share. No backend imports another.

Times: ``t`` is the stream presentation time in seconds (``pts * time_base``), the clock on which EmoS sentence
timestamps are given. A backend yields :class:`FrameChunk` s of RGB uint8 frames turned upright, scaled so their
short side is ``short_side``, chosen on the ``k / fps`` grid by :func:`kernels.align.on_grid`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MediaInfo:
    path: str
    duration_s: float
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    fps: float | None = None
    audio_rate: int = 0
    audio_channels: int = 0
    # counterclockwise display rotation in degrees (phones); None: not read by the probe, which decodes nothing (PyAV
    # turns each frame by its own; DALI, which cannot, asks engine.decode.display_rotation once per file)
    rotation: int | None = None
    video_start_s: float = 0.0   # presentation time of the first video frame
    start_s: float = 0.0         # where the media timeline starts (the earliest stream)
    video_end_s: float | None = None  # where the video stream says it ends (None: unknown)
    audio_end_s: float | None = None  # where the audio stream says it ends
    video_codec: str = ""
    n_frames: int = 0            # frames the container claims (0: unknown)

    @property
    def span_s(self) -> float:
        """How long the content lasts (a clip whose streams start at 1.5 s lasts duration - 1.5)."""
        return self.duration_s - self.start_s

    def lengths_s(self) -> list[float]:
        """Every reading of how long the media lasts: the timeline's end, the content's span, and each stream's
        own span (a video that starts 1.5 s after its audio)."""
        out = [self.duration_s, self.span_s]
        if self.video_end_s is not None:
            out.append(self.video_end_s - self.video_start_s)
        if self.audio_end_s is not None:
            out.append(self.audio_end_s)
        return out


@dataclass
class FrameChunk:
    frames: np.ndarray  # uint8 [n, H, W, 3] RGB: numpy, or a CUDA torch tensor from a GPU decoder
    t: np.ndarray       # float64 [n] presentation times in seconds (always numpy, on the host)


class BackendCannotDecode(Exception):
    """A backend cannot decode this file (codec, pixel format, device, library): the registry decodes it with PyAV.

    Raised before the first frame is yielded wherever the backend can tell in advance; raised later, the registry
    resumes with PyAV after the last time it yielded. The message is the reason, for the warning and the report.
    """


@dataclass
class AudioTrack:
    wave: np.ndarray    # float32 [n] mono
    sample_rate: int
    start_s: float      # time of wave[0]

    @property
    def duration_s(self) -> float:
        return len(self.wave) / self.sample_rate


def scaled_size(w: int, h: int, short_side: int, upscale: bool = False) -> tuple[int, int]:
    """Width and height once the short side is ``short_side`` (even sizes; 0 keeps the native size). A picture
    whose short side is already at most ``short_side`` keeps its size unless ``upscale``: interpolating up adds no
    information, only pixels for every extractor to process.

    >>> scaled_size(640, 360, 256), scaled_size(160, 120, 256), scaled_size(160, 120, 256, upscale=True)
    ((456, 256), (160, 120), (342, 256))
    """
    if not short_side or min(w, h) <= 0 or (min(w, h) <= short_side and not upscale):
        return w, h
    s = short_side / min(w, h)
    # even sizes keep swscale on its fast paths; never below 2 pixels
    return max(2, int(round(w * s / 2)) * 2), max(2, int(round(h * s / 2)) * 2)


def rotate(frames: np.ndarray, degrees: int) -> np.ndarray:
    """Turn ``[n, H, W, 3]`` frames upright for a counterclockwise display rotation of ``degrees``."""
    k = int(round(degrees / 90)) % 4
    return np.ascontiguousarray(np.rot90(frames, k=k, axes=(-3, -2))) if k else frames
