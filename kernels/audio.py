"""Audio kernels on torch tensors (any device): resampling and log-mel framing."""
from __future__ import annotations

import functools
import math

import torch
import torchaudio

from .align import n_frames


@functools.lru_cache(maxsize=16)
def _sinc_resampler(orig_hz: int, new_hz: int) -> torchaudio.transforms.Resample:
    # the transform computes its sinc kernel once (the function does so on every call: half its time on a clip)
    return torchaudio.transforms.Resample(orig_hz, new_hz, dtype=torch.float32)


def resample(wave: torch.Tensor, orig_hz: int, new_hz: int) -> torch.Tensor:
    """Band-limited resampling (torchaudio's sinc resampler, default settings) of ``[..., T]``.

    >>> x = torch.randn(4410)
    >>> torch.equal(resample(x, 44100, 16000), torchaudio.functional.resample(x, 44100, 16000))
    True
    """
    if orig_hz == new_hz:
        return wave
    if wave.dtype == torch.float32 and wave.device.type == "cpu":
        return _sinc_resampler(int(orig_hz), int(new_hz))(wave)
    return torchaudio.functional.resample(wave, orig_hz, new_hz)


class ChunkedResampler:
    """Resample a long signal piece by piece with the same result as one call on the whole signal.

    Pieces are cut at multiples of ``orig/g`` input samples (g = gcd), where input and output samples line up
    exactly, and each piece is resampled with ``pad`` samples of real context on both sides, which are then
    dropped. Memory stays bounded by the piece length, whatever the film's length.
    """

    def __init__(self, orig_hz: int, new_hz: int, pad: int = 2048):
        g = math.gcd(orig_hz, new_hz)
        self.orig, self.new = orig_hz, new_hz
        self.step_in, self.step_out = orig_hz // g, new_hz // g
        self.pad = self.step_in * math.ceil(pad / self.step_in)
        self.buf = torch.zeros(0)
        self.buf_start = 0   # absolute input index of buf[0]; always a multiple of step_in
        self.consumed = 0    # absolute input index up to which output was emitted; a multiple of step_in

    def _emit(self, end: int | None) -> torch.Tensor:
        lo = max(self.buf_start, self.consumed - self.pad)
        hi = len(self.buf) + self.buf_start if end is None else end + self.pad
        out = resample(self.buf[lo - self.buf_start:hi - self.buf_start], self.orig, self.new)
        o0 = (self.consumed - lo) * self.step_out // self.step_in
        if end is None:
            return out[o0:]
        piece = out[o0:o0 + (end - self.consumed) * self.step_out // self.step_in]
        self.consumed = end
        drop = max(0, self.consumed - self.pad - self.buf_start)
        self.buf, self.buf_start = self.buf[drop:], self.buf_start + drop
        return piece

    def push(self, samples: torch.Tensor) -> torch.Tensor:
        """Add input samples; return the output samples that are now final."""
        if self.orig == self.new:
            return samples
        self.buf = torch.cat([self.buf, samples.float()])
        end = ((self.buf_start + len(self.buf) - self.pad) // self.step_in) * self.step_in
        if end <= self.consumed:
            return torch.zeros(0)
        return self._emit(end)

    def flush(self) -> torch.Tensor:
        """The remaining output once the input has ended."""
        if self.orig == self.new or self.buf_start + len(self.buf) <= self.consumed:
            return torch.zeros(0)
        return self._emit(None)


def frame_spans(n_samples: int, win: int, hop: int, max_frames: int) -> list[tuple[int, int, int]]:
    """Split a non-centred framing into pieces of at most ``max_frames`` frames: ``(first_sample, end_sample,
    n_frames)`` per piece. Frame i covers ``[i*hop, i*hop + win)``, so pieces give exactly the frames of one call
    on the whole signal while only one piece is in memory."""
    total = n_frames(n_samples, 1, hop, win)  # sample rate 1: hop and win are already in samples
    spans = []
    for f0 in range(0, total, max_frames):
        n = min(max_frames, total - f0)
        spans.append((f0 * hop, (f0 + n - 1) * hop + win, n))
    return spans


def log_mel(wave: torch.Tensor, sample_rate: int, n_mels: int, win_s: float, hop_s: float,
            max_frames: int = 6000) -> torch.Tensor:
    """Log-mel frames ``[N, n_mels]`` of a mono wave, non-centred: frame i covers exactly ``[i*hop, i*hop + win)``
    (``n_fft == win``: a larger FFT would widen the frame and move its centre away from ``win / 2``).

    Computed ``max_frames`` frames at a time (60 s at a 10 ms hop), so the spectrogram of a long film never
    sits in memory whole."""
    win, hop = round(win_s * sample_rate), round(hop_s * sample_rate)
    spans = frame_spans(wave.numel(), win, hop, max_frames)
    if not spans:
        return torch.zeros(0, n_mels, dtype=torch.float32, device=wave.device)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=win, win_length=win, hop_length=hop,
        n_mels=n_mels, center=False, power=2.0).to(wave.device)
    out = torch.empty(sum(n for _, _, n in spans), n_mels, dtype=torch.float32, device=wave.device)
    row = 0
    for a, b, n in spans:
        out[row:row + n] = torch.log(mel(wave[a:b].float()) + 1e-6).transpose(0, 1)
        row += n
    return out
