"""Hugging Face image encoders (CLIP, SigLIP, or any ``AutoModel`` image backbone): one pooled vector per frame.

``params.model`` is a repository id in the local Hugging Face cache or a local folder (``save_pretrained``
layout); nothing is downloaded. What a frame's vector is depends on the model type:

- ``clip`` / ``clip_vision_model``: ``image_embeds`` of ``CLIPVisionModelWithProjection`` (the projected embedding
  that ``CLIPModel.get_image_features`` returns; ``projection_dim`` wide, not L2-normalised);
- ``siglip`` / ``siglip_vision_model``: ``pooler_output`` of ``SiglipVisionModel`` (its attention-pooling head,
  which is SigLIP's image feature; ``hidden_size`` wide);
- anything else (ViT, DINOv2, ConvNeXt, ...): ``pooler_output`` when the model has one, else the mean of the last
  hidden state over tokens (or over space for a convolutional map).

Frames are prepared on the model's device with :mod:`kernels.image`, batched: the resize, crop, mean and std come
from the model's preprocessor config (``preprocessor_config.json``) when it has one. A folder with only
``config.json`` and weights falls back to the config's ``image_size`` with CLIP's mean/std (SigLIP: 0.5/0.5; other
models: ImageNet's), and a warning says so. Resizing is bilinear and antialiased, where CLIP's own processor is
bicubic: features differ slightly from the reference pipeline, by the same amount for every frame.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from kernels.image import as_frames, center_crop, normalize, resize_short_side, resize_to, to_float

from . import _hf
from .base import Extractor

log = logging.getLogger(__name__)

# transformers' OPENAI_CLIP_MEAN/STD, IMAGENET_STANDARD_* and IMAGENET_DEFAULT_*
_CLIP_MEAN, _CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
_HALF = (0.5, 0.5, 0.5)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _size_field(size, key):
    """A field of a processor's ``size``/``crop_size`` (a dict in transformers 4, a ``SizeDict`` in 5)."""
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(key)
    if isinstance(size, int):
        return size if key == "shortest_edge" else None
    return getattr(size, key, None)


class HFVision(Extractor):
    """A Hugging Face image encoder. Random-init models appear in tests only; see the module docstring."""
    stateful = False  # one frame in, one row out: frames of several items may share a batch

    def setup(self) -> None:
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        name = self.spec.name
        self._model = _hf.model_name(self.spec)
        config = _hf.load_offline(name, AutoConfig.from_pretrained, self._model)
        self._type = config.model_type
        if self._type in ("clip", "clip_vision_model"):
            from transformers import CLIPVisionModelWithProjection as cls
            self._output = "image_embeds"
        elif self._type in ("siglip", "siglip_vision_model"):
            from transformers import SiglipVisionModel as cls
            self._output = "pooler_output"
        else:
            cls = AutoModel
            self._output = "pooler_output or mean"
        kwargs = {}
        if self._type in ("clip", "siglip"):  # a full checkpoint: build its vision tower alone; text weights unused
            kwargs["config"] = config.vision_config
            if self._type == "clip":  # the projection width lives in the outer config
                kwargs["config"].projection_dim = config.projection_dim
        net, missing = _hf.load_model(name, cls, self._model, **kwargs)
        if self._output != "image_embeds" and any(k.startswith("pooler") for k in missing):
            self._output = "mean"  # the checkpoint has no trained pooler: its output would be random
        self.net = _hf.place(net, self.device, self.precision)
        self._prep = self._preprocessing(config, _hf.try_load_offline(AutoImageProcessor.from_pretrained,
                                                                      self._model))
        with torch.inference_mode():  # one blank frame: the width the model really emits
            probe = self._embed(torch.zeros(1, 3, *self._prep["input_hw"], device=self.device))
        _hf.check_dim(self.spec, self._model, probe.shape[-1], f"image embeddings ({self._output})")
        self._digest = _hf.weights_digest(self._model)

    def _preprocessing(self, config, processor) -> dict:
        """Resize/crop/normalise settings: the processor's when it has one, else the config's image size."""
        vision = getattr(config, "vision_config", None) or config
        if processor is not None and getattr(processor, "image_mean", None) is not None:
            size, crop = getattr(processor, "size", None), getattr(processor, "crop_size", None)
            mean, std = tuple(processor.image_mean), tuple(processor.image_std)
            short = _size_field(size, "shortest_edge")
            if short:  # CLIP-style: short side, then a central square
                side = _size_field(crop, "height") if getattr(processor, "do_center_crop", False) else None
                if side is not None and _size_field(crop, "width") != side:
                    raise RuntimeError(f"{self.spec.name}: model {self._model!r} asks for a non-square crop "
                                       f"{crop}; only square crops are supported")
                return {"short_side": int(short), "crop": int(side) if side else None, "resize_hw": None,
                        "mean": mean, "std": std, "source": "preprocessor config",
                        "input_hw": (int(side or short),) * 2}
            h, w = _size_field(size, "height"), _size_field(size, "width")
            if h and w:  # SigLIP-style: squash to a fixed size
                return {"short_side": None, "crop": None, "resize_hw": (int(h), int(w)), "mean": mean, "std": std,
                        "source": "preprocessor config", "input_hw": (int(h), int(w))}
            log.warning("%s: %s has a preprocessor config with an unusual size %s; using the model config",
                        self.spec.name, self._model, size)
        side = int(getattr(vision, "image_size", 0) or 224)
        if self._type.startswith("clip"):
            mean, std = _CLIP_MEAN, _CLIP_STD
        elif self._type.startswith("siglip"):
            mean, std = _HALF, _HALF
        else:
            mean, std = _IMAGENET_MEAN, _IMAGENET_STD
        log.warning("%s: %s has no preprocessor config; using image size %d and mean/std %s/%s",
                    self.spec.name, self._model, side, mean, std)
        if self._type.startswith("siglip"):
            return {"short_side": None, "crop": None, "resize_hw": (side, side), "mean": mean, "std": std,
                    "source": "model config", "input_hw": (side, side)}
        return {"short_side": side, "crop": side, "resize_hw": None, "mean": mean, "std": std,
                "source": "model config", "input_hw": (side, side)}

    def _prepare(self, frames_bhwc: torch.Tensor) -> torch.Tensor:
        p = self._prep
        x = to_float(frames_bhwc)
        if p["resize_hw"] is not None:
            x = resize_to(x, *p["resize_hw"])
        else:
            x = resize_short_side(x, p["short_side"])
            if p["crop"]:
                x = center_crop(x, p["crop"])
        return normalize(x, p["mean"], p["std"]).to(_hf.model_dtype(self.net))

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.net(pixel_values=pixels.to(_hf.model_dtype(self.net)))
        if self._output == "image_embeds":
            return out.image_embeds
        pooled = getattr(out, "pooler_output", None) if self._output != "mean" else None
        if pooled is not None:
            return pooled.flatten(1)  # conv backbones pool to [B, C, 1, 1]
        hidden = out.last_hidden_state
        return hidden.mean(dim=1) if hidden.ndim == 3 else hidden.flatten(2).mean(dim=2)

    def model_id(self) -> str:
        return f"{getattr(self, '_model', self.spec.params.get('model'))} blake2b:{getattr(self, '_digest', '?')}"

    def attrs(self):
        prep = getattr(self, "_prep", {})
        return {**super().attrs(), "model_type": getattr(self, "_type", None),
                "pooling": getattr(self, "_output", None), "input_hw": list(prep.get("input_hw", ())),
                "preprocessing": prep.get("source")}

    @torch.inference_mode()
    def extract(self, frames: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(frames), self.spec.batch_size):
            x = self._prepare(as_frames(frames[i:i + self.spec.batch_size], self.device))
            out.append(self._embed(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.spec.dim), np.float32)
