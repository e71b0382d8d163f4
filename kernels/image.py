"""Image kernels on batched tensors ``[B, C, H, W]`` (any device)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def as_frames(frames, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` frames as a torch tensor on ``device``: from numpy (PyAV, DALI on the CPU) or from a
    tensor already on a GPU (DALI on the GPU), which stays where it is when ``device`` is that GPU."""
    if isinstance(frames, torch.Tensor):
        return frames.to(device)
    return torch.from_numpy(np.ascontiguousarray(frames)).to(device)


def to_float(frames_bhwc: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` -> float32 ``[B, 3, H, W]`` in ``[0, 1]``."""
    return frames_bhwc.permute(0, 3, 1, 2).float().div_(255.0)


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """Scale so the short side is ``size`` pixels, keeping the aspect ratio (bilinear, antialiased)."""
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    out = (max(1, round(h * scale)), max(1, round(w * scale)))
    if out == (h, w):
        return x
    return F.interpolate(x, size=out, mode="bilinear", align_corners=False, antialias=True)


def resize_to(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Scale to exactly ``h x w`` (aspect ratio not kept, as SigLIP's preprocessing does)."""
    if tuple(x.shape[-2:]) == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Central ``size x size`` crop (pads with zeros if the image is smaller)."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Per-channel ``(x - mean) / std``."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def luma(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma ``[B, H, W]`` of a float RGB batch ``[B, 3, H, W]``."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1)


def resize_frames(frames_bhwc: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` -> uint8 ``[B, h, w, 3]``, bilinear and antialiased (swscale's bilinear also
    widens its filter when shrinking), on the frames' own device.

    >>> resize_frames(torch.zeros(2, 48, 64, 3, dtype=torch.uint8), 24, 32).shape
    torch.Size([2, 24, 32, 3])
    """
    if tuple(frames_bhwc.shape[1:3]) == (h, w):
        return frames_bhwc
    x = frames_bhwc.permute(0, 3, 1, 2)  # a channels-last view: no copy
    if x.device.type == "cpu":  # torch's uint8 kernel (CPU only) is ~25x faster than a float round trip there
        y = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    else:
        y = F.interpolate(x.float(), size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        y = y.round_().clamp_(0, 255).to(torch.uint8)
    return y.permute(0, 2, 3, 1).contiguous()


def rotate_frames(frames_bhwc: torch.Tensor, degrees: int) -> torch.Tensor:
    """Turn ``[B, H, W, 3]`` frames upright for a counterclockwise display rotation of ``degrees`` (as
    :func:`engine.decode.types.rotate` does for numpy arrays)."""
    k = int(round(degrees / 90)) % 4
    return torch.rot90(frames_bhwc, k=k, dims=(1, 2)).contiguous() if k else frames_bhwc
