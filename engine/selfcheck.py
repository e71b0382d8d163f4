"""``python -m engine.selfcheck --gpu`` (or ``--cpu``): does DALI decode here exactly as PyAV does?

Generates its own clips, decodes each with DALI (``--gpu``: NVDEC on this machine's GPU; ``--cpu``: DALI's CPU
reader, VP9 only, so anyone can run it) and with PyAV on the CPU, and prints one line per check with its numbers:

- frames: for every clip (constant and variable frame rate, a video that starts at 1.5 s, a frame count that is not
  a multiple of the sequence length) and frame rate, the same frames chosen, bitwise the same ``t``, each picture
  the frame it should be (the pictures carry their index), pixels within the stated tolerance;
- on the GPU, that DALI's frames arrive as CUDA tensors (no round trip through host memory);
- fallback: a codec DALI does not decode on that device goes to PyAV with a reason, and gives PyAV's frames;
- encoder: the configured visual encoder's features of DALI's frames against those of PyAV's (cosine);
- speed and memory, for information: frames/s of both on a longer clip, and whether memory stays flat.

Exit code 0 when every check passes. Nothing is written outside a temporary folder (``--keep DIR`` keeps media).
"""
from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MEAN_TOL = 3.0      # largest mean |DALI - PyAV| of a frame, in 8-bit levels
P99_TOL = 16.0      # 99th percentile of |DALI - PyAV| over a clip (colour conversion differs at hard edges)
COSINE_TOL = 0.99   # smallest cosine between the encoder's features of DALI's and PyAV's frames
SEQ = 16            # sequence length (chunk_frames) of the checks

CFR = [k / 25 for k in range(75)]
VFR = [0.0, 0.04, 0.3, 0.31, 0.9, 1.0, 1.07, 1.5, 2.2, 2.23, 2.9, 3.3, 3.34, 4.0]
LATE = [1.5 + k / 25 for k in range(40)]
# (codec, container, file suffix) DALI decodes on each device, and one it does not (falls back to PyAV)
CODECS = {"gpu": [("libx264", "mp4", "mp4"), ("libvpx-vp9", "webm", "webm")],
          "cpu": [("libvpx-vp9", "webm", "webm")]}
NOT_DECODED = {"gpu": ("ffv1", "matroska", "mkv"), "cpu": ("libx264", "mp4", "mp4")}


class Report:
    def __init__(self):
        self.failed = 0

    def line(self, ok: bool | None, name: str, text: str) -> None:
        """One result line; ``ok`` None is information only."""
        tag = {True: "PASS", False: "FAIL", None: "info"}[ok]
        self.failed += ok is False
        print(f"{tag:4}  {name:28} {text}", flush=True)


def _clip(path: Path, codec: str, container: str, times: list[float], size=(192, 128)) -> str:
    from .media import indexed_frame, write_media
    index = {round(t, 6): i for i, t in enumerate(times)}
    write_media(str(path), times[-1] + 0.04, size=size, frame_times=times, codec=codec, container=container,
                frame_fn=lambda t: indexed_frame(index[round(t, 6)], *size))
    return str(path)


def _decode(path: str, fps, backend: str, device: str, short_side: int = 96, **kw):
    from .decode import iter_frames, probe
    chunks = list(iter_frames(path, fps, backend=backend, info=probe(path), short_side=short_side,
                              chunk_frames=SEQ, device=device, device_id=0, **kw))
    return chunks


def _host(chunks) -> tuple[np.ndarray, np.ndarray]:
    frames = [c.frames.cpu().numpy() if hasattr(c.frames, "cpu") else c.frames for c in chunks]
    return np.concatenate(frames), np.concatenate([c.t for c in chunks])


def check_frames(r: Report, device: str, work: Path) -> None:
    from .media import frame_index
    for codec, container, suffix in CODECS[device]:
        for label, times in (("cfr", CFR), ("vfr", VFR), ("starts at 1.5 s", LATE)):
            path = _clip(work / f"{codec}-{label.split()[0]}.{suffix}", codec, container, times)
            for fps in (None, 4.0):
                name = f"{codec} {label} fps={fps or 'all'}"
                reasons: list[str] = []
                d = _decode(path, fps, "dali", device, on_fallback=reasons.append)
                p = _decode(path, fps, "pyav", "cpu")
                (a, ta), (b, tb) = _host(p), _host(d)
                if reasons:
                    r.line(False, name, f"DALI fell back to PyAV: {reasons[0]}")
                    continue
                same_t = np.array_equal(ta, tb)
                same_chunks = [len(c.t) for c in p] == [len(c.t) for c in d]
                want = [int(np.argmin(np.abs(np.asarray(times) - x))) for x in ta]
                idx_ok = [frame_index(f) for f in b] == want if a.shape == b.shape else False
                if a.shape != b.shape:
                    r.line(False, name, f"shapes differ: DALI {b.shape}, PyAV {a.shape}; t {tb[:4]} vs {ta[:4]}")
                    continue
                diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
                mean, p99 = float(diff.reshape(len(a), -1).mean(axis=1).max()), float(np.percentile(diff, 99))
                on_gpu = all(getattr(c.frames, "is_cuda", False) for c in d) if device == "gpu" else True
                ok = same_t and same_chunks and idx_ok and mean <= MEAN_TOL and p99 <= P99_TOL and on_gpu
                r.line(ok, name, f"{len(tb)} frames, t {'identical' if same_t else 'DIFFER'}, chunks "
                                 f"{'identical' if same_chunks else 'DIFFER'}, frame indices "
                                 f"{'right' if idx_ok else 'WRONG'}, pixel |diff| worst-frame mean {mean:.2f} "
                                 f"(<= {MEAN_TOL}), p99 {p99:.0f} (<= {P99_TOL:.0f})"
                                 + ("" if device == "cpu" else f", CUDA tensors {'yes' if on_gpu else 'NO'}"))


def check_fallback(r: Report, device: str, work: Path) -> None:
    codec, container, suffix = NOT_DECODED[device]
    path = _clip(work / f"fallback.{suffix}", codec, container, CFR[:30])
    reasons: list[str] = []
    d = _decode(path, 4.0, "dali", device, on_fallback=reasons.append)
    p = _decode(path, 4.0, "pyav", "cpu")
    (a, ta), (b, tb) = _host(p), _host(d)
    ok = len(reasons) == 1 and np.array_equal(ta, tb) and np.array_equal(a, b)
    r.line(ok, f"fallback {codec}", f"reason: {reasons[0] if reasons else 'NONE'}; PyAV's {len(ta)} frames "
                                    f"{'identical' if ok else 'DIFFER'}")


def _texture(width: int, height: int) -> np.ndarray:
    """Smooth colour blobs twice as wide as a frame: a picture with texture everywhere, as films have. (Encoders
    are oversensitive on flat test patterns: there, +-2 levels of noise alone move EfficientNet's features to a
    cosine of 0.78.)"""
    import torch
    low = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 3, 12, 40)).astype(np.float32))
    big = torch.nn.functional.interpolate(low, size=(height, 2 * width), mode="bicubic", align_corners=False)
    return big.clamp(0, 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()


def check_encoder(r: Report, device: str, work: Path, name: str) -> None:
    import torch

    import extractors as registry

    from .media import write_media
    codec, container, suffix = CODECS[device][0]
    w, h = 320, 192
    tex = _texture(w, h)
    path = str(work / f"encoder.{suffix}")
    write_media(path, 1.92, fps=25, size=(w, h), codec=codec, container=container,  # the picture pans right
                frame_fn=lambda t: np.ascontiguousarray(tex[:, 4 * int(round(t * 25)):][:, :w]))
    d = _decode(path, None, "dali", device, short_side=256)
    p = _decode(path, None, "pyav", "cpu", short_side=256)
    ex = registry.create(registry.get_spec(name), device="cuda" if device == "gpu" else "cpu", precision="fp32")
    ex.setup()
    fa = np.concatenate([ex.extract(c.frames) for c in p])
    fb = np.concatenate([ex.extract(c.frames) for c in d])  # on the GPU: CUDA tensors straight into the encoder
    cos = (fa * fb).sum(1) / (np.linalg.norm(fa, axis=1) * np.linalg.norm(fb, axis=1) + 1e-12)
    r.line(bool(cos.min() >= COSINE_TOL), f"encoder {name}",
           f"{len(cos)} frames, cosine DALI vs PyAV features: min {cos.min():.5f}, mean {cos.mean():.5f} "
           f"(>= {COSINE_TOL}); max |diff| {np.abs(fa - fb).max():.4f}")
    del ex
    if device == "gpu":
        torch.cuda.empty_cache()


def check_speed(r: Report, device: str, work: Path, seconds: float) -> None:
    from .decode import iter_frames, probe
    from .media import write_media
    codec, container, suffix = CODECS[device][0]
    size = (1280, 720) if device == "gpu" else (640, 360)
    base = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path = str(work / f"speed.{suffix}")
    t0 = time.perf_counter()
    write_media(path, seconds, fps=25, size=size, codec=codec, container=container,
                frame_fn=lambda t: np.roll(base, int(t * 200), axis=1))
    made = time.perf_counter() - t0
    info = probe(path)
    used: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def run(backend, dev, rep=0):
        n, t0 = 0, time.perf_counter()
        for c in iter_frames(path, None, backend=backend, info=info, short_side=256, chunk_frames=32, device=dev,
                             device_id=0):
            n += len(c.t)
            if backend == "dali":
                used[rep].append(_memory_mib(device))
        return n, time.perf_counter() - t0

    n_d, s_d = run("dali", device)
    n_p, s_p = run("pyav", "cpu")
    r.line(n_d == n_p, "speed", f"{seconds:.0f} s {codec} {size[0]}x{size[1]} (made in {made:.0f} s), every frame to "
                                f"short side 256: DALI-{device} {n_d / s_d:.0f} frames/s, PyAV {n_p / s_p:.0f} "
                                f"frames/s (ratio {s_p / s_d:.2f}); {n_d} vs {n_p} frames")
    # the same file twice more: DALI's buffers fill up during the first ~30 sequences, then a leak would show as
    # a third pass peaking higher than the second
    run("dali", device, rep=1)
    run("dali", device, rep=2)
    second, third = max(used[1]), max(used[2])
    r.line(third - second <= 64, "memory", f"{'GPU' if device == 'gpu' else 'process'} memory in use while DALI "
                                           "decodes, passes 1, 2, 3: " + ", ".join(
                                               f"{min(u):.0f}-{max(u):.0f}" for u in used.values())
           + f" MiB (third peak - second peak {third - second:.0f} MiB, <= 64)")


def _memory_mib(device: str) -> float:
    if device == "gpu":
        import torch
        free, total = torch.cuda.mem_get_info()
        return (total - free) / 2**20
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.selfcheck", description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--gpu", action="store_true", help="DALI on this machine's GPU (NVDEC) vs PyAV")
    where.add_argument("--cpu", action="store_true", help="DALI's CPU reader (VP9) vs PyAV: runs anywhere")
    ap.add_argument("--seconds", type=float, default=None, help="length of the speed clip (default 60 on the GPU, "
                                                                  "20 on the CPU)")
    ap.add_argument("--extractor", default=None, help="visual encoder to compare (default: the config's visual group)")
    ap.add_argument("--keep", default=None, help="write the generated media here and keep it")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    device = "gpu" if args.gpu else "cpu"

    from .config import load_config
    from .decode import get_backend
    r = Report()
    ok, why = get_backend("dali").available(device)
    r.line(ok, "dali available", f"on the {device}" + (f": {why}" if why else ""))
    if not ok:
        print("selfcheck: FAIL (DALI cannot run here)")
        return 1
    name = args.extractor or load_config()["groups"]["visual"]
    with tempfile.TemporaryDirectory(prefix="emos-selfcheck-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        for step in (lambda: check_frames(r, device, work), lambda: check_fallback(r, device, work),
                     lambda: check_encoder(r, device, work, name),
                     lambda: check_speed(r, device, work, args.seconds or (60.0 if device == "gpu" else 20.0))):
            try:
                step()
            except Exception as exc:  # a check that crashes is a failed check; the others still run
                r.line(False, "error", f"{type(exc).__name__}: {exc}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"selfcheck: {'PASS' if not r.failed else f'FAIL ({r.failed} checks)'} on the {device}, "
          f"{time.perf_counter() - started:.0f} s, peak RSS {peak:.0f} MiB")
    return 0 if not r.failed else 1


if __name__ == "__main__":
    sys.exit(main())
