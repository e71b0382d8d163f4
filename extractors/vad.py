"""Silero VAD: the probability that someone speaks, per 32 ms chunk, so that training can mask silence and music.

The model (``silero_vad/data/silero_vad.jit``) ships inside the ``silero-vad`` wheel and needs only torch; nothing
is downloaded. It is recurrent: chunk i covers samples ``[i * 512, (i + 1) * 512)`` at 16 kHz, and its probability
also depends on all earlier audio of the item. A chunk that the signal does not fill is dropped, as in every other
framing here, so rows lie wholly inside the signal; times are chunk centres.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from kernels.align import frame_centres

from .base import Extractor, file_digest

CHUNK = {16000: 512, 8000: 256}  # samples per chunk: the only sizes the model accepts


class SileroVAD(Extractor):
    """One column, ``speech_prob`` (0-1), every 32 ms."""

    columns = ("speech_prob",)

    def setup(self) -> None:
        import silero_vad
        self._weights = os.path.join(os.path.dirname(silero_vad.__file__), "data", "silero_vad.jit")
        with warnings.catch_warnings():  # torch warns that torch.jit.load is deprecated; the model is TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            self.model = silero_vad.load_silero_vad()
        self._digest = file_digest(self._weights)

    def model_id(self) -> str:
        return f"silero-vad (jit) blake2b:{getattr(self, '_digest', '?')}"

    def _chunk_s(self) -> float:
        sr = int(self.spec.sample_rate or 16000)
        if sr not in CHUNK:
            raise ValueError(f"{self.spec.name}: Silero VAD runs at 16000 or 8000 Hz, not sample_rate: {sr}")
        return CHUNK[sr] / sr

    def attrs(self):
        hop = self._chunk_s()
        return {**super().attrs(), "columns": list(self.columns), "rate_hz": 1.0 / hop, "hop_s": hop, "win_s": hop,
                "sample_rate": self.spec.sample_rate, "time_is": "chunk centre (the model also sees earlier audio)"}

    @torch.inference_mode()
    def extract(self, wave: np.ndarray, sample_rate: int):
        if sample_rate not in CHUNK:
            raise ValueError(f"{self.spec.name}: Silero VAD runs at 16000 or 8000 Hz, not {sample_rate}")
        step = CHUNK[sample_rate]
        n = len(wave) // step
        if n == 0:
            return np.zeros((0, self.spec.dim), np.float32), np.zeros(0)
        x = torch.from_numpy(np.ascontiguousarray(wave[:n * step], dtype=np.float32))[None]
        self.model.reset_states()  # a new item starts with a fresh recurrent state
        prob = self.model.audio_forward(x, sample_rate)[0, :n]
        return prob.float().numpy()[:, None], frame_centres(n, step / sample_rate, step / sample_rate)
