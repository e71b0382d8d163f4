"""Hugging Face speech encoders, frame-level: wav2vec2 / HuBERT / WavLM (and other models with the wav2vec2
convolutional front end) and the Whisper encoder. One row every 20 ms, with its time.

``params.model`` is a repository id in the local Hugging Face cache or a local folder (``save_pretrained``
layout); nothing is downloaded. Rows are the last hidden state, or ``hidden_states[params.layer]`` when
``layer`` is set (0 is the input of the first transformer layer, as transformers numbers them).

Time grid (16 kHz; ``t`` is the centre of each row's receptive field, :func:`kernels.align.frame_centres`):

- wav2vec2 family: the conv stack (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2) has hop 320 samples (20 ms) and
  a receptive field of 400 samples (25 ms), no padding: row i covers samples ``[320 i, 320 i + 400)``, so
  ``t = 0.0125 + 0.02 i`` and a wave of n samples gives ``1 + (n - 400) // 320`` rows. Hop and field are read
  from the model's ``conv_kernel``/``conv_stride``. The wave is normalised to zero mean and unit variance per
  window when the model's feature extractor says ``do_normalize`` (missing preprocessor config: normalised).
- Whisper: log-mel from ``WhisperFeatureExtractor`` (hop 160, n_fft 400, centred STFT), then conv1 (k3, s1) and
  conv2 (k3, s2): hop 320 samples; row j is centred on sample 320 j and sees 1040 samples (65 ms), so
  ``t = 0.02 j``. Whisper always encodes a 30 s input (zero-padded); rows whose centre lies past the real audio
  are dropped, so a wave of n samples gives ``ceil(n / 320)`` rows.

Long films are encoded in bounded windows, so memory does not grow with the film: the rows are cut into chunks of
``chunk_s`` seconds (default 20), and each chunk is encoded with ``context_s`` seconds (default 2) of real audio on
both sides, whose rows are then dropped. Window starts fall on the 20 ms grid, so a row's index in a window maps
exactly to its index in the film: rows come out in time order, each exactly once, as many as one pass over the
whole wave would give. Transformer attention and the wav2vec2 group norm see one window, not the film, so values
near chunk borders differ slightly from a single pass; the context keeps each kept row >= ``context_s`` from a
window edge. Whisper requires ``chunk_s + 2 * context_s <= 30``. ``batch_size`` is windows per forward pass.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch

from kernels.align import frame_centres

from . import _hf
from .base import Extractor

log = logging.getLogger(__name__)


class HFAudio(Extractor):
    """A Hugging Face speech encoder. Random-init models appear in tests only; see the module docstring."""

    def setup(self) -> None:
        from transformers import AutoConfig

        p = self.spec.params
        self._model = _hf.model_name(self.spec)
        self._chunk_s, self._context_s = float(p.get("chunk_s", 20.0)), float(p.get("context_s", 2.0))
        if self._chunk_s <= 0 or self._context_s < 0:
            raise ValueError(f"{self.spec.name}: chunk_s must be > 0 and context_s >= 0, "
                             f"not {self._chunk_s} and {self._context_s}")
        self._layer = None if p.get("layer") is None else int(p["layer"])
        config = _hf.load_offline(self.spec.name, AutoConfig.from_pretrained, self._model)
        self._type = config.model_type
        if self._type == "whisper":
            self._setup_whisper(config)
        elif getattr(config, "conv_stride", None) and getattr(config, "conv_kernel", None):
            self._setup_conv(config)
        else:
            raise RuntimeError(f"{self.spec.name}: model {self._model!r} is a {self._type!r} model; hf_audio takes "
                               f"Whisper or wav2vec2-style models (wav2vec2, HuBERT, WavLM, data2vec-audio)")
        self._core = max(1, round(self._chunk_s * self._rate / self._hop))
        self._ctx = round(self._context_s * self._rate / self._hop)
        if self._type == "whisper" and (self._core + 2 * self._ctx) * self._hop > self._window_samples:
            raise ValueError(f"{self.spec.name}: Whisper encodes {self._window_samples / self._rate:g} s at a "
                             f"time; chunk_s + 2 * context_s ({self._chunk_s:g} + 2 * {self._context_s:g}) "
                             f"must not exceed it")
        if self.spec.sample_rate and int(self.spec.sample_rate) != self._rate:
            log.warning("%s: the config decodes audio at %s Hz but %s expects %d Hz; waves are resampled",
                        self.spec.name, self.spec.sample_rate, self._model, self._rate)
        _hf.check_dim(self.spec, self._model, self._width, "frame features")
        self._digest = _hf.weights_digest(self._model)

    def _setup_conv(self, config) -> None:
        from transformers import AutoFeatureExtractor, AutoModel

        if getattr(config, "add_adapter", False):
            raise RuntimeError(f"{self.spec.name}: model {self._model!r} has an adapter after its conv stack "
                               f"(add_adapter); its frame grid is not supported")
        fe = _hf.try_load_offline(AutoFeatureExtractor.from_pretrained, self._model)
        if fe is None:
            log.warning("%s: %s has no preprocessor config; assuming 16 kHz and per-window normalisation",
                        self.spec.name, self._model)
        self._rate = int(getattr(fe, "sampling_rate", 16000))
        self._normalize = bool(getattr(fe, "do_normalize", True))
        net, _ = _hf.load_model(self.spec.name, AutoModel, self._model, unused=("masked_spec_embed",))
        self.net = _hf.place(net, self.device, self.precision)
        self._layers = list(zip(config.conv_kernel, config.conv_stride))
        self._hop = math.prod(s for _, s in self._layers)
        self._win, stride = 1, 1  # receptive field of the conv stack, in samples
        for k, s in self._layers:
            self._win += (k - 1) * stride
            stride *= s
        self._offset = 0.0
        self._width = int(config.hidden_size)

    def _setup_whisper(self, config) -> None:
        from transformers import WhisperFeatureExtractor, WhisperModel

        fe = _hf.try_load_offline(WhisperFeatureExtractor.from_pretrained, self._model)
        if fe is None:
            log.warning("%s: %s has no preprocessor config; using WhisperFeatureExtractor defaults with %d mel bins",
                        self.spec.name, self._model, config.num_mel_bins)
            fe = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
        self._fe = fe
        whisper, _ = _hf.load_model(self.spec.name, WhisperModel, self._model, unused=("decoder.",))
        encoder = whisper.get_encoder()
        self.net = _hf.place(encoder, self.device, self.precision)  # the decoder is dropped with the model
        s1, s2 = encoder.conv1.stride[0], encoder.conv2.stride[0]
        k1, k2 = encoder.conv1.kernel_size[0], encoder.conv2.kernel_size[0]
        self._rate, self._hop = int(fe.sampling_rate), int(fe.hop_length) * s1 * s2
        # conv2 row j is centred on mel frame s1*s2*j, which the centred STFT centres on sample hop*j
        self._win = ((k1 - 1) + (k2 - 1) * s1) * int(fe.hop_length) + int(fe.n_fft)
        self._offset = -self._win / 2.0 / self._rate
        self._window_samples = int(fe.n_samples)
        if fe.nb_max_frames != config.max_source_positions * s1 * s2:
            raise RuntimeError(f"{self.spec.name}: the feature extractor of {self._model!r} makes "
                               f"{fe.nb_max_frames} mel frames but the encoder takes "
                               f"{config.max_source_positions * s1 * s2}")
        self._width = int(config.d_model)

    # ---- time grid --------------------------------------------------------------------------------------------
    def _n_rows(self, n_samples: int) -> int:
        """Rows of a wave of ``n_samples`` (at the model's rate)."""
        if self._type == "whisper":
            return -(-n_samples // self._hop)  # rows whose centre lies inside the audio
        n = n_samples
        for k, s in self._layers:  # as Wav2Vec2Model._get_feat_extract_output_lengths
            n = (n - k) // s + 1 if n >= k else 0
        return n

    def _windows(self, n_samples: int, n_rows: int):
        """``(a, b, g0, c0, c1)``: samples ``[a, b)`` are encoded; its row k is film row ``g0 + k``; rows
        ``[c0, c1)`` are kept."""
        for c0 in range(0, n_rows, self._core):
            c1 = min(n_rows, c0 + self._core)
            g0, g1 = max(0, c0 - self._ctx), min(n_rows, c1 + self._ctx)
            if self._type == "whisper" or g1 == n_rows:  # the last window takes the tail too, as one pass would
                b = min(n_samples, self._hop * g1) if g1 < n_rows else n_samples
            else:
                b = self._hop * (g1 - 1) + self._win
            yield self._hop * g0, b, g0, c0, c1

    # ---- encoders ---------------------------------------------------------------------------------------------
    def _hidden(self, out) -> torch.Tensor:
        return out.last_hidden_state if self._layer is None else out.hidden_states[self._layer]

    def _encode(self, pieces: list[np.ndarray]) -> torch.Tensor:
        """Hidden states ``[B, T, D]`` of equally long (wav2vec2) or any (Whisper) pieces of wave."""
        dtype = _hf.model_dtype(self.net)
        want_all = self._layer is not None
        if self._type == "whisper":
            mel = self._fe(pieces, sampling_rate=self._rate, return_tensors="pt", device=str(self.device))
            x = mel["input_features"].to(self.device, dtype)
            return self._hidden(self.net(input_features=x, output_hidden_states=want_all))
        x = torch.from_numpy(np.stack(pieces)).to(self.device)
        if self._normalize:  # as Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm, per window
            x = (x - x.mean(dim=1, keepdim=True)) / torch.sqrt(x.var(dim=1, unbiased=False, keepdim=True) + 1e-7)
        return self._hidden(self.net(input_values=x.to(dtype), output_hidden_states=want_all))

    # ---- description and work ---------------------------------------------------------------------------------
    def model_id(self) -> str:
        return f"{getattr(self, '_model', self.spec.params.get('model'))} blake2b:{getattr(self, '_digest', '?')}"

    def attrs(self):
        rate, hop = getattr(self, "_rate", None), getattr(self, "_hop", None)
        hop_s = hop / rate if rate and hop else None
        return {**super().attrs(), "rate_hz": 1.0 / hop_s if hop_s else None, "hop_s": hop_s,
                "win_s": self._win / rate if hop_s else None, "sample_rate": rate, "time_is": "frame centre",
                "model_type": getattr(self, "_type", None), "layer": getattr(self, "_layer", None),
                "chunk_s": getattr(self, "_chunk_s", None), "context_s": getattr(self, "_context_s", None)}

    @torch.inference_mode()
    def extract(self, wave: np.ndarray, sample_rate: int):
        x = np.ascontiguousarray(wave, dtype=np.float32).reshape(-1)
        if int(sample_rate) != self._rate:
            from kernels.audio import resample
            x = resample(torch.from_numpy(x), int(sample_rate), self._rate).numpy()
        n_rows = self._n_rows(len(x))
        feats = np.zeros((n_rows, self._width), np.float32)
        batch: list[tuple] = []

        def flush():
            hidden = self._encode([x[a:b] for a, b, *_ in batch]).float().cpu().numpy()
            for h, (_, _, g0, c0, c1) in zip(hidden, batch):
                feats[c0:c1] = h[c0 - g0:c1 - g0]
            batch.clear()

        for w in self._windows(len(x), n_rows):
            same_shape = self._type == "whisper" or not batch or batch[0][1] - batch[0][0] == w[1] - w[0]
            if batch and (len(batch) >= self.spec.batch_size or not same_shape):
                flush()
            batch.append(w)
        if batch:
            flush()
        t = frame_centres(n_rows, self._hop / self._rate, self._win / self._rate, self._offset)
        return feats, t
