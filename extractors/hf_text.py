"""Hugging Face sentence encoders (multilingual-e5 by default): one L2-normalised vector per text.

``params.model`` is a repository id in the local Hugging Face cache or a local folder (``save_pretrained``
layout, with the tokenizer files); nothing is downloaded. A text's vector is the mean of the last hidden state
over its real tokens (attention mask), L2-normalised, as the e5 models are meant to be used. e5 expects a prefix:
``params.prefix: passage`` encodes ``"passage: <text>"`` (``query`` likewise; ``""`` for none). Texts longer than
``params.max_length`` tokens are truncated. The encoder is multilingual, so ``lang`` is not used.
"""
from __future__ import annotations

import numpy as np
import torch

from . import _hf
from .base import Extractor


class HFText(Extractor):
    """A Hugging Face text encoder. Random-init models appear in tests only; see the module docstring."""

    def setup(self) -> None:
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        name = self.spec.name
        self._model = _hf.model_name(self.spec)
        config = _hf.load_offline(name, AutoConfig.from_pretrained, self._model)
        self.tokenizer = _hf.load_offline(name, AutoTokenizer.from_pretrained, self._model, what="tokenizer")
        net, _ = _hf.load_model(name, AutoModel, self._model, unused=("pooler.",))  # mean pooling, not the pooler
        self.net = _hf.place(net, self.device, self.precision)
        _hf.check_dim(self.spec, self._model, int(config.hidden_size), "text embeddings")
        limit = getattr(self.tokenizer, "model_max_length", None) or 512
        self._max_length = min(int(self.spec.params.get("max_length", 512)), int(limit) if limit < 1e9 else 512)
        self._digest = _hf.weights_digest(self._model)

    def _prefix(self) -> str:
        prefix = self.spec.params.get("prefix") or ""
        return f"{prefix}: " if prefix else ""

    def model_id(self) -> str:
        return f"{getattr(self, '_model', self.spec.params.get('model'))} blake2b:{getattr(self, '_digest', '?')}"

    def attrs(self):
        return {**super().attrs(), "pooling": "mean over attention mask, L2-normalised",
                "prefix": self._prefix(), "max_length": getattr(self, "_max_length", None)}

    @torch.inference_mode()
    def extract(self, texts: list[str], lang: str = "") -> np.ndarray:
        texts = [self._prefix() + t for t in texts]
        # shortest first, so each batch pads little; rows go back to the input order at the end
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.spec.dim), np.float32)
        for i in range(0, len(order), self.spec.batch_size):
            idx = order[i:i + self.spec.batch_size]
            enc = self.tokenizer([texts[j] for j in idx], padding=True, truncation=True,
                                 max_length=self._max_length, return_tensors="pt").to(self.device)
            ids, mask = enc["input_ids"], enc["attention_mask"]
            hidden = self.net(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            mask = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
        return out
