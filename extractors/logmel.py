"""Log-mel and Kaldi filterbank frames (torchaudio; no weights). Times are frame centres."""
from __future__ import annotations

import numpy as np
import torch

from kernels.align import frame_centres
from kernels.audio import frame_spans, log_mel

from .base import Extractor


class LogMel(Extractor):
    def _framing(self):
        p = self.spec.params
        return float(p.get("win_s", 0.025)), float(p.get("hop_s", 0.010))

    def model_id(self) -> str:
        import torchaudio
        return f"torchaudio {torchaudio.__version__} {type(self).__name__} (no weights)"

    def attrs(self):
        win, hop = self._framing()
        return {**super().attrs(), "rate_hz": 1.0 / hop, "win_s": win, "hop_s": hop,
                "sample_rate": self.spec.sample_rate, "time_is": "frame centre"}

    @torch.inference_mode()
    def extract(self, wave: np.ndarray, sample_rate: int):
        win, hop = self._framing()
        x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).to(self.device)
        feats = log_mel(x, sample_rate, int(self.spec.params.get("n_mels", self.spec.dim)), win, hop)
        return feats.cpu().numpy(), frame_centres(len(feats), hop, win)


class KaldiFbank(LogMel):
    @torch.inference_mode()
    def extract(self, wave: np.ndarray, sample_rate: int):
        import torchaudio
        win, hop = self._framing()
        if len(wave) < round(win * sample_rate):
            return np.zeros((0, self.spec.dim), np.float32), np.zeros(0)
        x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)) * 32768.0
        spans = frame_spans(len(x), round(win * sample_rate), round(hop * sample_rate), 6000)
        feats = torch.cat([torchaudio.compliance.kaldi.fbank(  # piece by piece: bounded memory on long films
            x[a:b][None], sample_frequency=sample_rate, num_mel_bins=int(self.spec.params.get("n_mels", self.spec.dim)),
            frame_length=win * 1000, frame_shift=hop * 1000, dither=0.0, snip_edges=True) for a, b, _ in spans])
        return feats.numpy(), frame_centres(len(feats), hop, win)
