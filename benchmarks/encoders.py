"""``python -m benchmarks.encoders [--images 256] [--rounds 5] [--compile]``: the default encoders' CPU runtimes.

EfficientNet-Lite0 at batch 16 on 224x224 frames that look like video (1/f-noise texture, shapes with edges,
uneven light; see :func:`textured_frames`), every runtime side by side in one process:

- ``fp32 eager``: torch, fp32, NCHW (the reference every cosine is taken against; ``runtime: fp32``);
- ``fp32 channels_last``: torch, fp32, channels-last weights and input;
- ``bf16 autocast``: torch eager under ``torch.autocast("cpu", torch.bfloat16)``, NCHW;
- ``bf16 autocast channels_last``: the same in channels-last (``runtime: bf16``);
- ``torch.compile``: inductor, fp32 (only with ``--compile``: it compiles for minutes on 2 cores);
- ``onnx runtime``: the extractor's ONNX export run by ONNX Runtime, fp32 (``runtime: onnx``);
- ``openvino``: the same ONNX model compiled by OpenVINO for the CPU, only when ``openvino`` is installed.

For each: images/s (median of interleaved rounds, one batch of 16 per round, the order alternating) and the
ratio to ``fp32 eager``, and the minimum and median row cosine against ``fp32 eager`` over ``--images`` varied
images (a runtime is faithful when the minimum is >= 0.999). On a CPU without native bf16 (no ``avx512_bf16`` or
``amx_bf16`` flag) torch emulates bf16 and runs many times slower: the bf16 rows then use 32 images and one round,
and say so.

Log-mel (no weights) is measured too: seconds per media minute in torch against the visual encoder's seconds per
media minute at 4 fps, to tell whether a faster runtime for it could matter.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import time
from typing import Callable

import numpy as np
import torch

log = logging.getLogger("benchmarks.encoders")

BATCH, SIZE = 16, 224


def textured_frames(n: int, h: int = SIZE, w: int = SIZE, seed: int = 0) -> np.ndarray:
    """``n`` uint8 RGB frames ``[n, h, w, 3]`` with the statistics of natural images rather than flat colour:
    1/f^a noise (a varies) with correlated channels, a few discs and boxes with hard edges, and a light gradient."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fy ** 2 + fx ** 2)
    f[0, 0] = 1.0
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        a = rng.uniform(0.8, 1.6)
        img = np.empty((h, w, 3))
        prev = None
        for c in range(3):
            ch = np.fft.irfft2((rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** a, s=(h, w))
            ch = (ch - ch.mean()) / (ch.std() + 1e-9)
            prev = ch if prev is None else 0.6 * prev + 0.4 * ch  # colour channels of real scenes correlate
            img[..., c] = prev
        img = 128 + 40 * img + rng.uniform(-60, 60, 3)
        for _ in range(int(rng.integers(2, 8))):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(h // 20 + 1, h // 3 + 2)
            m = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) if rng.random() < 0.5 else \
                (np.abs(yy - cy) < r) & (np.abs(xx - cx) < 1.5 * r)
            img[m] = img[m] * 0.5 + rng.uniform(0, 255, 3)
        if rng.random() < 0.5:
            img *= (0.7 + 0.6 * xx / w)[..., None]
        out[i] = np.clip(img, 0, 255)
    return out


def native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (torch emulates it otherwise)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def efficientnet_runtimes(use_compile: bool) -> tuple[dict[str, Callable], dict[str, float]]:
    """Callables uint8 ``[B, 224, 224, 3]`` -> float32 ``[B, 1280]`` for each runtime, and their setup seconds."""
    import copy

    import extractors as registry
    from extractors.efficientnet import _MEAN, _STD
    from kernels.image import normalize, to_float

    setup_s: dict[str, float] = {}

    def make(runtime: str):
        t0 = time.perf_counter()
        ex = registry.create(registry.get_spec("efficientnet_lite0", {"params": {"runtime": runtime}}))
        ex.setup()
        setup_s[runtime] = time.perf_counter() - t0
        return ex

    ref, bf16, onnx = make("fp32"), make("bf16"), make("onnx")
    net = ref.net

    def prep(frames: np.ndarray) -> torch.Tensor:  # what extract() does to a 224x224 frame (resize, crop: no-ops)
        return normalize(to_float(torch.from_numpy(frames)), _MEAN, _STD)

    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)

    def fp32_cl(frames):
        return net_cl.extract_features(prep(frames).contiguous(memory_format=torch.channels_last)).mean((2, 3)).numpy()

    def bf16_nchw(frames):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            f = net.extract_features(prep(frames))
        return f.float().mean((2, 3)).numpy()

    runs = {"fp32 eager": ref.extract, "fp32 channels_last": fp32_cl, "bf16 autocast": bf16_nchw,
            "bf16 autocast channels_last": bf16.extract, "onnx runtime": onnx.extract}
    if use_compile:
        t0 = time.perf_counter()
        compiled = torch.compile(lambda x: net.extract_features(x).mean((2, 3)), dynamic=False)
        with torch.inference_mode():
            compiled(prep(textured_frames(BATCH, seed=99)))
        setup_s["torch.compile"] = time.perf_counter() - t0
        runs["torch.compile"] = lambda frames: compiled(prep(frames)).numpy()
    try:
        import openvino
    except ImportError:
        log.info("openvino is not installed: its row is skipped")
    else:
        t0 = time.perf_counter()
        ov_model = _openvino_model(net, openvino)
        setup_s["openvino"] = time.perf_counter() - t0
        runs["openvino"] = lambda frames: ov_model(prep(frames).numpy())
    return runs, setup_s


def _openvino_model(net, openvino):
    """The extractor's ONNX export (:func:`extractors.efficientnet.export_onnx`) compiled by OpenVINO for the
    CPU."""
    from extractors.efficientnet import export_onnx
    core = openvino.Core()
    model = core.read_model(export_onnx(net, SIZE))
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads(),
                                                 "PERFORMANCE_HINT": "LATENCY"})
    req = compiled.create_infer_request()
    return lambda x: np.array(req.infer({0: x})[0])


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def measure_efficientnet(n_images: int, rounds: int, use_compile: bool) -> None:
    runs, setup_s = efficientnet_runtimes(use_compile)
    native = native_bf16()
    slow = set() if native else {k for k in runs if k.startswith("bf16")}
    images = textured_frames(n_images, seed=1)
    few = min(len(images), 2 * BATCH)
    cos: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        ref = np.concatenate([runs["fp32 eager"](images[i:i + BATCH]) for i in range(0, len(images), BATCH)])
        for name, fn in runs.items():
            n = few if name in slow else len(images)
            out = np.concatenate([fn(images[i:i + BATCH]) for i in range(0, n, BATCH)])
            cos[name] = row_cosines(out, ref[:n])
        batch = textured_frames(BATCH, seed=2)
        secs: dict[str, list[float]] = {k: [] for k in runs}
        names = list(runs)
        for r in range(rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                if name in slow and secs[name]:
                    continue
                t0 = time.perf_counter()
                runs[name](batch)
                secs[name].append(time.perf_counter() - t0)
    base = BATCH / statistics.median(secs["fp32 eager"])
    print(f"EfficientNet-Lite0, batch {BATCH}, {SIZE}x{SIZE}, {torch.get_num_threads()} threads; CPU native bf16: "
          f"{'yes' if native else 'no (torch emulates it)'}")
    print(f"{'runtime':30s} {'images/s':>9s} {'x fp32':>7s} {'min cos':>10s} {'median cos':>10s} "
          f"{'images':>6s} {'rounds':>6s} {'setup s':>7s}")
    for name in runs:
        ips = BATCH / statistics.median(secs[name])
        c = cos[name]
        setup = setup_s.get({"fp32 eager": "fp32", "bf16 autocast channels_last": "bf16",
                             "onnx runtime": "onnx"}.get(name, name))
        print(f"{name:30s} {ips:9.2f} {ips / base:7.2f} {c.min():10.7f} {np.median(c):10.7f} {len(c):6d} "
              f"{len(secs[name]):6d} {'' if setup is None else format(setup, '7.1f')}")
    faithful = {k: BATCH / statistics.median(secs[k]) for k in runs if cos[k].min() >= 0.999}
    best = max(faithful, key=faithful.get)
    print(f"fastest faithful (every row cosine >= 0.999 vs fp32 eager): {best}, "
          f"{faithful[best] / base:.2f}x fp32 eager")


def measure_logmel(rounds: int) -> None:
    """Log-mel of one media minute in torch vs the visual encoder's time for the same minute at 4 fps."""
    from kernels.audio import log_mel
    rng = np.random.default_rng(0)
    wave = torch.from_numpy((0.1 * rng.normal(size=60 * 16000)).astype(np.float32))
    import extractors as registry
    ex = registry.create(registry.get_spec("efficientnet_lite0"))
    ex.setup()
    frames = textured_frames(BATCH, seed=3)
    secs = {"log-mel": [], "efficientnet (default runtime)": []}
    with torch.inference_mode():
        log_mel(wave, 16000, 64, 0.025, 0.010)
        for _ in range(rounds):
            t0 = time.perf_counter()
            log_mel(wave, 16000, 64, 0.025, 0.010)
            secs["log-mel"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ex.extract(frames)
            secs["efficientnet (default runtime)"].append((time.perf_counter() - t0) * 240 / BATCH)
    mel, vis = (statistics.median(v) for v in secs.values())
    print(f"log-mel (torchaudio, fp32): {mel * 1000:.1f} ms per media minute; EfficientNet-Lite0 "
          f"({ex.runtime}) at 4 fps: {vis:.2f} s per media minute; log-mel / visual = {mel / vis:.4f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=256, help="images for the cosines (>= 256 for the record)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (medians)")
    ap.add_argument("--compile", action="store_true", help="also torch.compile (minutes of compiling on 2 cores)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    measure_efficientnet(args.images, args.rounds, args.compile)
    measure_logmel(args.rounds)


if __name__ == "__main__":
    main()
