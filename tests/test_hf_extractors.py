"""The Hugging Face backends (hf_vision, hf_audio, hf_text), through the registry.

No model hub is reachable, so every model here is a tiny RANDOMLY INITIALISED one built from a transformers config
class and written with ``save_pretrained`` (random init in tests only: these are not pretrained encoders). They
check the plumbing a user relies on: shapes, the time grid, bounded chunks on long films, determinism, agreement
with the reference transformers call, and one-line errors.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import extractors
from kernels.align import n_frames
from kernels.image import center_crop, normalize, resize_short_side, to_float

transformers = pytest.importorskip("transformers")

SR = 16000
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "passage", "query", ":", "the", "rain", "was", "heavy",
         "i", "miss", "you", "and", "then", "came", "!", ".", "那", "年", "的", "雨", "很", "大", "我", "想", "你", "。"]


def _tiny(cls, config, folder, *extras):
    """A tiny random-init model (tests only) saved with its optional processor files."""
    torch.manual_seed(0)
    cls(config).save_pretrained(folder)
    for extra in extras:
        extra.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    t = transformers
    root = tmp_path_factory.mktemp("hf_random_init")
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8)
    out = {
        "clip_vision": _tiny(t.CLIPVisionModelWithProjection, t.CLIPVisionConfig(projection_dim=24, **vision),
                             root / "clip_vision", t.CLIPImageProcessor(size={"shortest_edge": 32},
                                                                        crop_size={"height": 32, "width": 32})),
        "clip_full": _tiny(t.CLIPModel, t.CLIPConfig(
            text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                             vocab_size=64, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                             pad_token_id=1),
            vision_config=vision, projection_dim=16), root / "clip_full"),
        "siglip": _tiny(t.SiglipVisionModel, t.SiglipVisionConfig(**vision), root / "siglip"),
        "wav2vec2": _tiny(t.Wav2Vec2Model, t.Wav2Vec2Config(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(8,) * 7,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=8),
            root / "wav2vec2", t.Wav2Vec2FeatureExtractor(do_normalize=True)),
        "whisper": _tiny(t.WhisperModel, t.WhisperConfig(
            d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80, vocab_size=16, max_target_positions=16,
            pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3, suppress_tokens=[],
            begin_suppress_tokens=[]), root / "whisper", t.WhisperFeatureExtractor(feature_size=80)),
    }
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    out["bert"] = _tiny(t.BertModel, t.BertConfig(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64), root / "bert", t.BertTokenizer(vocab_file=str(vocab), model_max_length=64))
    return out


def make(name, folder, dim, **settings):
    params = settings.pop("params", {})
    spec = extractors.get_spec(name, {"params": {"model": str(folder), **params}, "dim": dim, **settings})
    ex = extractors.create(spec)
    ex.setup()
    return ex


def frames(n=5, h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def noise(seconds, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def record_inputs(net, key):
    """Shapes of what the encoder is given, call by call."""
    seen = []
    net.register_forward_pre_hook(lambda m, args, kwargs: seen.append(tuple(kwargs[key].shape)), with_kwargs=True)
    return seen


# ---- visual ----------------------------------------------------------------------------------------------------
def test_vision_one_row_per_frame_deterministic_and_batch_free(models):
    ex = make("hf_vision", models["clip_vision"], 24)
    x = frames(5)
    a = ex.extract(x)
    assert a.shape == (5, 24) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, ex.extract(x))
    np.testing.assert_allclose(make("hf_vision", models["clip_vision"], 24, batch_size=2).extract(x), a, atol=1e-5)
    assert ex.extract(x[:0]).shape == (0, 24)
    attrs = ex.attrs()
    assert attrs["rate_hz"] == 4.0 and attrs["pooling"] == "image_embeds"
    assert attrs["preprocessing"] == "preprocessor config" and attrs["input_hw"] == [32, 32]
    assert attrs["model"].startswith(f"{models['clip_vision']} blake2b:") and not attrs["model"].endswith("?")


def test_vision_full_clip_checkpoint_gives_get_image_features(models):
    """A full CLIP folder with no preprocessor config: the vision tower alone, config image size, CLIP mean/std."""
    ex = make("hf_vision", models["clip_full"], 16)
    x = frames(3, 40, 70)
    pixels = normalize(center_crop(resize_short_side(to_float(torch.from_numpy(x)), 32), 32), CLIP_MEAN, CLIP_STD)
    clip = transformers.CLIPModel.from_pretrained(models["clip_full"]).eval()
    with torch.inference_mode():
        ref = clip.get_image_features(pixel_values=pixels)
    ref = getattr(ref, "pooler_output", ref)  # a tensor in transformers 4, an output object in 5
    np.testing.assert_allclose(ex.extract(x), ref.numpy(), atol=1e-5)
    assert ex.attrs()["preprocessing"] == "model config"


def test_vision_siglip_uses_its_pooled_output(models):
    ex = make("hf_vision", models["siglip"], 32)
    assert ex.extract(frames(2)).shape == (2, 32)
    assert ex.attrs()["pooling"] == "pooler_output" and ex.attrs()["input_hw"] == [32, 32]


# ---- audio -----------------------------------------------------------------------------------------------------
def test_wav2vec2_long_wave_in_bounded_chunks_on_the_20ms_grid(models):
    ex = make("hf_audio", models["wav2vec2"], 32)
    seen = record_inputs(ex.net, "input_values")
    wave = noise(70.0)
    f, t = ex.extract(wave, SR)
    n = n_frames(len(wave), SR, 0.020, 0.025)  # conv stack: hop 320, receptive field 400 samples
    assert n == 1 + (len(wave) - 400) // 320 == 3499
    assert f.shape == (n, 32) and t.shape == (n,) and np.isfinite(f).all()
    np.testing.assert_allclose(t, 0.0125 + 0.02 * np.arange(n), atol=1e-9)
    assert np.all(np.diff(t) > 0) and len(np.unique(t)) == n
    # every window is at most chunk_s + 2 * context_s long (+ one receptive field), however long the film
    assert len(seen) == 4 and max(s[-1] for s in seen) <= (20 + 2 * 2) * SR + 400
    f2, t2 = ex.extract(wave, SR)
    np.testing.assert_array_equal(f, f2)
    np.testing.assert_array_equal(t, t2)
    small = make("hf_audio", models["wav2vec2"], 32, params={"chunk_s": 7.0, "context_s": 1.0})
    fs, ts = small.extract(wave, SR)
    np.testing.assert_array_equal(ts, t)
    assert fs.shape == f.shape
    attrs = ex.attrs()
    assert attrs["rate_hz"] == pytest.approx(50.0) and attrs["hop_s"] == pytest.approx(0.02)
    assert attrs["win_s"] == pytest.approx(0.025) and attrs["model_type"] == "wav2vec2"


def test_wav2vec2_one_window_equals_the_plain_transformers_call(models):
    ex = make("hf_audio", models["wav2vec2"], 32)
    wave = noise(3.0, seed=1)
    f, t = ex.extract(wave, SR)
    fe = transformers.Wav2Vec2FeatureExtractor.from_pretrained(models["wav2vec2"])
    net = transformers.Wav2Vec2Model.from_pretrained(models["wav2vec2"]).eval()
    with torch.inference_mode():
        ref = net(**fe(wave, sampling_rate=SR, return_tensors="pt")).last_hidden_state[0].numpy()
    np.testing.assert_allclose(f, ref, atol=1e-4)
    assert len(t) == len(ref)
    assert make("hf_audio", models["wav2vec2"], 32).extract(wave[:300], SR)[0].shape == (0, 32)  # < 25 ms


def test_wav2vec2_layer_and_resampling(models):
    ex = make("hf_audio", models["wav2vec2"], 32, params={"layer": 1})
    f, t = ex.extract(noise(2.0), SR)
    f8, t8 = ex.extract(noise(2.0)[::2].copy(), 8000)  # resampled to the model's 16 kHz
    assert f.shape == f8.shape and np.array_equal(t, t8) and ex.attrs()["layer"] == 1


def test_whisper_rows_every_20ms_trimmed_to_the_audio(models):
    ex = make("hf_audio", models["whisper"], 32)
    seen = record_inputs(ex.net, "input_features")
    wave = noise(70.0)
    f, t = ex.extract(wave, SR)
    n = -(-len(wave) // 320)  # rows whose centre (sample 320 j) lies inside the audio
    assert f.shape == (n, 32) == (3500, 32) and np.isfinite(f).all()
    np.testing.assert_allclose(t, 0.02 * np.arange(n), atol=1e-9)
    assert len(np.unique(t)) == n and t[-1] < 70.0
    assert seen and all(s[1:] == (80, 3000) for s in seen)  # always one 30 s Whisper input per window
    np.testing.assert_array_equal(f, ex.extract(wave, SR)[0])
    short = noise(5.0, seed=2)
    fs, ts = ex.extract(short, SR)
    assert fs.shape == (250, 32) and ts[-1] == pytest.approx(4.98)
    fe = transformers.WhisperFeatureExtractor.from_pretrained(models["whisper"])
    encoder = transformers.WhisperModel.from_pretrained(models["whisper"]).get_encoder().eval()
    with torch.inference_mode():
        ref = encoder(fe(short, sampling_rate=SR, return_tensors="pt").input_features).last_hidden_state[0]
    np.testing.assert_allclose(fs, ref[:250].numpy(), atol=1e-4)
    assert ex.attrs()["rate_hz"] == pytest.approx(50.0) and ex.attrs()["model_type"] == "whisper"


def test_whisper_windows_must_fit_in_30s(models):
    with pytest.raises(ValueError, match="must not exceed"):
        make("hf_audio", models["whisper"], 32, params={"chunk_s": 28.0, "context_s": 2.0})


# ---- text ------------------------------------------------------------------------------------------------------
TEXTS = ["the rain was heavy.", "我想你。", "", "i miss you and then you came !", "那年的雨很大。"]


def test_text_unit_vectors_in_input_order_whatever_the_batching(models):
    ex = make("hf_text", models["bert"], 32)
    a = ex.extract(TEXTS, "en")
    assert a.shape == (5, 32) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, ex.extract(TEXTS, "en"))
    np.testing.assert_allclose(ex.extract(TEXTS[::-1], "zh"), a[::-1], atol=1e-5)
    np.testing.assert_allclose(make("hf_text", models["bert"], 32, batch_size=1).extract(TEXTS), a, atol=1e-5)
    assert ex.extract([], "en").shape == (0, 32)
    # mean pooling over the attention mask of "passage: <text>", L2-normalised
    tok = transformers.AutoTokenizer.from_pretrained(models["bert"])
    net = transformers.AutoModel.from_pretrained(models["bert"]).eval()
    with torch.inference_mode():
        enc = tok(["passage: " + TEXTS[3]], return_tensors="pt")
        ref = net(**enc).last_hidden_state[0].mean(dim=0)
    np.testing.assert_allclose(a[3], (ref / ref.norm()).numpy(), atol=1e-5)
    bare = make("hf_text", models["bert"], 32, params={"prefix": ""})
    assert bare.attrs()["prefix"] == "" and not np.allclose(bare.extract(TEXTS[:1]), a[:1])


# ---- errors and configs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["hf_vision", "hf_audio", "hf_text"])
def test_a_model_missing_offline_is_one_clear_line(name, tmp_path):
    ex = extractors.create(extractors.get_spec(name, {"params": {"model": "no-such-org/no-such-model"}}))
    with pytest.raises(RuntimeError) as info:
        ex.setup()
    msg = str(info.value)
    assert msg == (f"{name}: model 'no-such-org/no-such-model' is not available offline (no such folder and not "
                   f"in the Hugging Face cache); download it on a machine with access (hf download "
                   f"no-such-org/no-such-model --local-dir DIR) and set params.model to DIR")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    ex = extractors.create(extractors.get_spec(name, {"params": {"model": str(tmp_path / "missing")}}))
    with pytest.raises(RuntimeError, match="does not exist") as info:
        ex.setup()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, key, dim", [("hf_vision", "clip_vision", 24), ("hf_audio", "whisper", 32),
                                            ("hf_text", "bert", 32)])
def test_a_dim_that_does_not_match_the_model_says_what_to_set(name, key, dim, models):
    with pytest.raises(RuntimeError, match=f"gives {dim}-d .* set dim: {dim} in configs/extractors/{name}.yaml"):
        make(name, models[key], dim + 1)


def test_yaml_defaults_name_real_public_models():
    specs = extractors.available()
    assert specs["hf_vision"].params["model"] == "openai/clip-vit-base-patch32" and specs["hf_vision"].dim == 512
    assert specs["hf_audio"].params["model"] == "facebook/wav2vec2-base" and specs["hf_audio"].dim == 768
    assert specs["hf_text"].params["model"] == "intfloat/multilingual-e5-small" and specs["hf_text"].dim == 384


# ---- end to end ------------------------------------------------------------------------------------------------
def test_engine_runs_the_three_backends_from_a_config_file(models, corpus, tmp_path, run_extract):
    """The CLI with a --config that points the backends at local folders: rows, times and attrs in the store."""
    from engine.reader import open_store
    cfg = tmp_path / "hf.yaml"
    cfg.write_text(
        "extractors:\n"
        f"  hf_vision: {{dim: 24, params: {{model: '{models['clip_vision']}'}}}}\n"
        f"  hf_audio: {{dim: 32, params: {{model: '{models['wav2vec2']}', chunk_s: 1.0, context_s: 0.5}}}}\n"
        f"  hf_text: {{dim: 32, params: {{model: '{models['bert']}'}}}}\n", encoding="utf-8")
    out = tmp_path / "out"
    code, printed = run_extract("--split", "stream", "--root", corpus, "--out", out,
                                "--extractors", "hf_vision,hf_audio,hf_text", "--config", cfg)
    assert code == 0, printed
    item = open_store(out / "stream.zarr").item("Beta Film")
    audio = item.groups["audio"]
    t = np.asarray(audio.t)
    assert np.asarray(audio.features).shape == (len(t), 32) and len(t) > 100
    np.testing.assert_allclose(np.diff(t), 0.02, atol=1e-9)
    assert audio.attrs["rate_hz"] == pytest.approx(50.0) and audio.attrs["extractor"] == "hf_audio"
    assert np.asarray(item.groups["visual"].features).shape[1] == 24
    text = np.asarray(item.groups["text"].features)
    assert text.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-3)
