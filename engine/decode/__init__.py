"""Decoding on a time grid, through a registry of backends chosen by name.

A backend is a class registered with :func:`register_backend` that has ``name``, ``available(device)``,
``frames(path, fps, *, info, short_side, chunk_frames, threads, device, device_id)`` yielding
:class:`~engine.decode.types.FrameChunk` s, and optionally ``audio(path, sample_rate, chunk_s)`` and
``probe(path)``. PyAV (CPU, every codec) is the reference; DALI decodes on the GPU (NVDEC) or, for VP8, VP9 and
MJPEG, on the CPU. Probing and audio always go through PyAV.

A backend that cannot decode a file raises :class:`~engine.decode.types.BackendCannotDecode`; :func:`iter_frames`
then decodes that file with PyAV, logs a warning and hands the reason to ``on_fallback`` (for the run report).

Adding a backend: one module that defines a class and registers it with :func:`register_backend`; name it
``package.module:name`` in ``decode.backend`` (or add it to ``_REGISTRY``'s built-in names below to give it a short name).
"""
from __future__ import annotations

import logging
from typing import Callable, Iterator

from kernels.align import EPS

from ..registry import Registry
from .types import (AudioTrack, BackendCannotDecode, FrameChunk, MediaInfo, rotate,  # noqa: F401  (shared types)
                    scaled_size)

log = logging.getLogger(__name__)

_REGISTRY = Registry("decode backend", {"pyav": "engine.decode.pyav", "dali": "engine.decode.dali"})


def register_backend(cls: type) -> type:
    """Class decorator: make a decode backend available under ``cls.name``."""
    return _REGISTRY.register(cls)


def get_backend(name: str):
    """The backend registered as ``name`` or ``package.module:name`` (built-in ones are imported on first use)."""
    return _REGISTRY.get(name)


def backend_names() -> list[str]:
    return _REGISTRY.names()


def select_backend(requested: str = "auto", device: str = "gpu") -> str:
    """The backend to use for ``decode.backend`` and ``decode.device``.

    ``auto`` picks DALI only for ``device: gpu`` and only where CUDA, DALI and NVDEC are all usable, else PyAV (the
    better CPU decoder: every codec). A backend named explicitly must be able to run on ``device``.
    """
    if requested in ("pyav", "cpu"):
        return "pyav"
    if requested == "auto":
        if device != "gpu":
            return "pyav"
        ok, why = get_backend("dali").available("gpu")
        if not ok:
            log.debug("decode: auto picks pyav (%s)", why)
        return "dali" if ok else "pyav"
    backend = get_backend(requested)
    ok, why = backend.available(device)
    if not ok:
        raise RuntimeError(f"decode.backend={requested} (device {device}): "
                           f"{requested.rpartition(':')[2].upper()} cannot run here: {why}")
    return requested


def probe(path: str) -> MediaInfo:
    """Stream facts without decoding; raises :class:`~engine.errors.MediaError` for files that are not media."""
    return get_backend("pyav").probe(path)


def decode_audio(path: str, sample_rate: int, chunk_s: float = 10.0) -> AudioTrack | None:
    """The first audio stream as mono float32 at ``sample_rate`` (None when the file has no audio)."""
    return get_backend("pyav").audio(path, sample_rate, chunk_s)


def iter_frames(path: str, fps: float | None, backend: str = "pyav", on_fallback: Callable[[str], None] | None = None,
                **kw) -> Iterator[FrameChunk]:
    """Frames on the ``k / fps`` grid from the chosen backend, in chunks.

    ``kw`` go to the backend's ``frames`` (``info``, ``short_side``, ``chunk_frames``, ``threads``, ``device``,
    ``device_id``). Where the backend cannot decode the file, PyAV decodes it instead: a warning is logged and
    ``on_fallback(reason)`` is called once, before the first PyAV frame. If the backend gave up part way, PyAV's
    frames continue after the last time already yielded (the grid rule depends on each frame's own times only).
    """
    if backend == "pyav":
        return get_backend("pyav").frames(path, fps, **kw)
    return _with_fallback(path, fps, backend, on_fallback, kw)


def _with_fallback(path, fps, backend, on_fallback, kw) -> Iterator[FrameChunk]:
    last_t = None
    try:
        for chunk in get_backend(backend).frames(path, fps, **kw):
            if len(chunk.t):
                last_t = float(chunk.t[-1])
            yield chunk
        return
    except BackendCannotDecode as exc:
        reason = f"{backend} ({kw.get('device', 'gpu')}): {exc}"
    log.warning("%s: decoded with PyAV instead: %s", path, reason)
    if on_fallback is not None:
        on_fallback(reason)
    for chunk in get_backend("pyav").frames(path, fps, **kw):
        if last_t is not None:
            keep = chunk.t > last_t + EPS
            if not keep.any():
                continue
            chunk = FrameChunk(chunk.frames[keep], chunk.t[keep])
        yield chunk


def iter_frames_pyav(path: str, fps: float | None, **kw) -> Iterator[FrameChunk]:
    """The reference backend's frames (tests and benchmarks compare against it)."""
    return get_backend("pyav").frames(path, fps, **kw)


def display_rotation(path: str) -> int:
    """Counterclockwise display rotation of a file's video, in degrees (decodes its first frame)."""
    return get_backend("pyav").display_rotation(path)
