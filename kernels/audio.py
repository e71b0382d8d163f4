"""Audio kernels on torch tensors (any device): resampling and log-mel framing."""
from __future__ import annotations

import math

import torch
import torchaudio


def resample(wave: torch.Tensor, orig_hz: int, new_hz: int) -> torch.Tensor:
    """Band-limited resampling (torchaudio's sinc resampler) of ``[..., T]``."""
    if orig_hz == new_hz:
        return wave
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


def log_mel(wave: torch.Tensor, sample_rate: int, n_mels: int, win_s: float, hop_s: float) -> torch.Tensor:
    """Log-mel frames ``[N, n_mels]`` of a mono wave, non-centred: frame i covers exactly ``[i*hop, i*hop + win)``
    (``n_fft == win``: a larger FFT would widen the frame and move its centre away from ``win / 2``)."""
    win, hop = round(win_s * sample_rate), round(hop_s * sample_rate)
    if wave.numel() < win:
        return torch.zeros(0, n_mels, dtype=torch.float32, device=wave.device)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=win, win_length=win, hop_length=hop,
        n_mels=n_mels, center=False, power=2.0).to(wave.device)
    return torch.log(mel(wave.float()) + 1e-6).transpose(0, 1).contiguous()
