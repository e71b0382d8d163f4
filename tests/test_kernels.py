"""Kernels against reference computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kernels.align import frame_centres, n_frames, on_grid, window_rows
from kernels.audio import ChunkedResampler, log_mel, resample
from kernels.image import (as_frames, center_crop, luma, normalize, resize_frames, resize_short_side, rotate_frames,
                           to_float)


def test_window_rows_are_half_open():
    t = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    assert window_rows(t, 0.25, 0.75) == (1, 3)           # 0.25 in, 0.75 out
    assert window_rows(t, 0.26, 0.74) == (2, 3)
    assert window_rows(t, 2.0, 3.0) == (5, 5)
    assert window_rows(t, 0.5, 0.1) == (2, 2)             # empty, never negative


def test_frame_centres_match_the_framing():
    sr, win, hop = 16000, 0.025, 0.010
    n = n_frames(16000, sr, hop, win)
    assert n == 1 + (16000 - 400) // 160
    c = frame_centres(n, hop, win, offset_s=1.0)
    assert c[0] == pytest.approx(1.0125) and np.allclose(np.diff(c), hop)


def test_grid_keeps_each_frame_once_and_only_frames_on_screen_at_a_grid_time():
    times = [0.0, 0.3, 0.31, 0.9, 2.0]
    kept = [t for t, nxt in zip(times, times[1:] + [2.1]) if on_grid(t, nxt, 2)]
    assert kept == [0.0, 0.31, 0.9, 2.0]  # grid 0, .5, 1, 1.5, 2: 0.9 is on screen at 1.0 and 1.5, kept once
    assert on_grid(-0.04, 0.0, 4) is False  # a frame before zero is never on screen


def test_chunked_resampler_equals_one_call():
    x = torch.randn(44100 * 3 + 17)
    whole = resample(x, 44100, 16000)
    rs = ChunkedResampler(44100, 16000)
    pieces = [rs.push(x[i:i + 3000]) for i in range(0, len(x), 3000)] + [rs.flush()]
    y = torch.cat(pieces)
    assert len(y) == len(whole)
    assert torch.allclose(y, whole, atol=1e-5)


def test_log_mel_matches_a_numpy_reference():
    import torchaudio
    sr, win, hop, n_mels = 16000, 0.025, 0.010, 40
    x = torch.sin(2 * np.pi * 440 * torch.arange(8000) / sr)
    got = log_mel(x, sr, n_mels, win, hop).numpy()
    w, h, n_fft = 400, 160, 400
    frames = np.stack([x.numpy()[i:i + w] for i in range(0, 8000 - w + 1, h)])
    window = np.hanning(w + 1)[:-1]  # periodic Hann, as torch.hann_window
    spec = np.abs(np.fft.rfft(frames * window, n=n_fft)) ** 2
    fb = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, sr / 2, n_mels, sr).numpy()
    ref = spec @ fb
    assert got.shape == ref.shape == (1 + (8000 - w) // h, n_mels)
    np.testing.assert_allclose(np.exp(got) - 1e-6, ref, rtol=1e-3, atol=1e-4 * ref.max())
    peak_bin = int(np.argmax(got[5]))
    assert fb[int(440 / sr * n_fft), peak_bin] > 0  # energy lands in the mel band that holds 440 Hz


def test_image_kernels():
    img = torch.arange(2 * 6 * 8 * 3, dtype=torch.uint8).reshape(2, 6, 8, 3)
    x = to_float(img)
    assert x.shape == (2, 3, 6, 8) and float(x.max()) <= 1.0
    assert torch.allclose(x[0, :, 1, 2] * 255, img[0, 1, 2].float())
    r = resize_short_side(x, 3)
    assert r.shape[-2:] == (3, 4)
    c = center_crop(x, 4)
    assert torch.equal(c, x[..., 1:5, 2:6])
    n = normalize(x, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert torch.allclose(n, (x - 0.5) / 0.25)
    assert torch.allclose(luma(x)[0, 0, 0], 0.299 * x[0, 0, 0, 0] + 0.587 * x[0, 1, 0, 0] + 0.114 * x[0, 2, 0, 0])
    padded = center_crop(x, 10)
    assert padded.shape[-2:] == (10, 10)


def test_log_mel_in_pieces_equals_one_pass():
    x = torch.randn(16000 * 3 + 77)
    whole = log_mel(x, 16000, 32, 0.025, 0.010, max_frames=10**9)
    pieces = log_mel(x, 16000, 32, 0.025, 0.010, max_frames=37)
    assert pieces.shape == whole.shape == (1 + (len(x) - 400) // 160, 32)
    torch.testing.assert_close(pieces, whole, atol=1e-4, rtol=1e-5)


def test_frame_batch_kernels_match_their_references():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    x = as_frames(frames)
    assert x.dtype == torch.uint8 and np.array_equal(x.numpy(), frames) and as_frames(x) is x
    # the uint8 resize equals torch's float resize, rounded, within one level
    small = resize_frames(x, 24, 32)
    ref = torch.nn.functional.interpolate(x.permute(0, 3, 1, 2).float(), size=(24, 32), mode="bilinear",
                                          align_corners=False, antialias=True).round().permute(0, 2, 3, 1)
    assert small.shape == (3, 24, 32, 3) and (small.float() - ref).abs().max() <= 1
    assert resize_frames(x, 48, 64) is x
    from engine.decode.types import rotate
    for degrees in (0, 90, 180, 270, -90):
        assert np.array_equal(rotate_frames(x, degrees).numpy(), rotate(frames, degrees))
