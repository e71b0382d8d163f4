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


def crop_squares(x: torch.Tensor, index: torch.Tensor, centre_xy: torch.Tensor, side: torch.Tensor,
                 angle: torch.Tensor, size: int) -> torch.Tensor:
    """Square crops ``[K, C, size, size]`` of a batch ``x [B, C, H, W]``, each turned by its own angle.

    Crop k is taken from image ``index[k]``, centred on ``centre_xy[k]`` (pixels, x right and y down, edges of
    pixel 0 at 0), ``side[k]`` pixels wide, with its horizontal axis along ``angle[k]`` (radians, clockwise on
    screen): an angle equal to the slope of the eye line levels the eyes. Bilinear; outside the image is 0.

    >>> img = torch.zeros(1, 1, 8, 8); img[..., 2:4, 4:6] = 1.0
    >>> crop_squares(img, torch.tensor([0]), torch.tensor([[5.0, 3.0]]), torch.tensor([2.0]), torch.tensor([0.0]),
    ...              2)[0, 0].tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    _, _, h, w = x.shape
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output coordinates in [-1, 1] to input coordinates in [-1, 1] (align_corners=False)
    theta = torch.stack([
        torch.stack([side / w * cos, -side / w * sin, 2 * centre_xy[:, 0] / w - 1], dim=1),
        torch.stack([side / h * sin, side / h * cos, 2 * centre_xy[:, 1] / h - 1], dim=1)], dim=1)
    grid = F.affine_grid(theta.to(x.dtype), [len(index), x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x[index], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
