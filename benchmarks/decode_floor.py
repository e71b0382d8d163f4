"""``python -m benchmarks.decode_floor [--rounds 7] [--threads 2] [--seconds 64]``: the engine's PyAV path at 4 fps
against the floor of any decoder that decodes every frame, side by side in one process.

The clip: 640x360, 25 fps H.264 made here (x264 ``veryfast``, CRF 23): a textured scene panning, a cut every 4 s,
a moving box; once with x264's B-frame pyramid (``bf=3``, how most films are encoded) and once without B-frames
(``bf=0``: nothing can be skipped). Cached under ``benchmarks/.work/decode_floor``.

- ``floor``: PyAV decoding every frame, no conversion, ``thread_type="AUTO"``, ``--threads`` decoder threads;
- ``floor SLICE`` / ``floor FRAME``: the same with one threading mode only (for information: AUTO is what the
  engine uses);
- ``engine``: ``iter_frames_pyav(path, 4.0)`` at the configured short side (256), the same threads;
- ``engine, no skipping``: the same with ``skip_nonref=False`` (every frame decoded);
- ``previous engine``: the path as it was before (every frame decoded, each kept frame converted by its own
  ``frame.reformat``, chunks stacked with ``np.stack``), kept here to show what the change bought.

Rounds interleaved (the order alternates every round); medians of wall seconds and of this process's CPU seconds.
Ratio = seconds / floor seconds (1.00: as cheap as decoding alone; the target is <= 1.05).
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

log = logging.getLogger("benchmarks.decode_floor")

WORK = Path(__file__).resolve().parent / ".work" / "decode_floor"
FPS_OUT = 4.0


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A 1/f-noise colour texture, the spectrum of natural scenes (flat colour would make decoding unrealistically
    cheap)."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fy ** 2 + fx ** 2)
    f[0, 0] = 1.0
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):
        ch = np.fft.irfft2((rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** 1.2, s=(h, w))
        img[..., c] = (ch - ch.mean()) / ch.std()
    return np.clip(128 + 45 * img, 0, 255).astype(np.uint8)


def make_clip(path: Path, seconds: float, b_frames: int, fps: int = 25, w: int = 640, h: int = 360) -> None:
    import av
    tex = texture(2 * h, 3 * w)
    tmp = path.with_suffix(".partial.mp4")
    with av.open(str(tmp), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "veryfast", "crf": "23", "bf": str(b_frames)}
        for i in range(int(seconds * fps)):
            t = i / fps
            x0 = int((np.sin(t / 7) * 0.5 + 0.5) * (tex.shape[1] - w))
            y0 = int((np.cos(t / 5) * 0.5 + 0.5) * (tex.shape[0] - h))
            img = tex[y0:y0 + h, x0:x0 + w].copy()
            if int(t / 4) % 2:  # a cut every 4 s
                img = 255 - img
            bx = int((t * 80) % (w - 60))
            img[150:210, bx:bx + 60] = (200, 40, 40)
            fr = av.VideoFrame.from_ndarray(img, format="rgb24")
            fr.pts, fr.time_base = i, Fraction(1, fps)
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    os.replace(tmp, path)


def clip(seconds: float, b_frames: int) -> Path:
    path = WORK / f"clip-640x360-25fps-{seconds:g}s-bf{b_frames}.mp4"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        log.info("writing %s", path)
        make_clip(path, seconds, b_frames)
    return path


def floor(path: str, threads: int, thread_type: str = "AUTO") -> int:
    import av
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = thread_type
        if threads:
            s.codec_context.thread_count = threads
        return sum(1 for _ in c.decode(s))


def engine(path: str, threads: int, short_side: int, chunk_frames: int, skip_nonref: bool = True) -> int:
    from engine.decode.pyav import iter_frames_pyav
    return sum(len(ch.t) for ch in iter_frames_pyav(path, FPS_OUT, short_side=short_side, chunk_frames=chunk_frames,
                                                    threads=threads, skip_nonref=skip_nonref))


def previous_engine(path: str, threads: int, short_side: int, chunk_frames: int) -> int:
    """The engine's PyAV path before this benchmark was written: a new ``reformat`` per kept frame, ``np.stack``."""
    import av

    from engine.decode.types import scaled_size
    from kernels.align import on_grid

    def rgb(f):
        w, h = scaled_size(f.width, f.height, short_side)
        return f.reformat(width=w, height=h, format="rgb24").to_ndarray()

    n, frames, pending = 0, [], None
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        if threads:
            s.codec_context.thread_count = threads
        tb = float(s.time_base)
        for f in c.decode(s):
            t = f.pts * tb
            if pending is not None and t > pending[1] and on_grid(pending[1], t, FPS_OUT):
                frames.append(rgb(pending[0]))
                if len(frames) >= chunk_frames:
                    n += len(np.stack(frames))
                    frames = []
            pending = (f, t)
        pf, pt = pending
        if on_grid(pt, pt + float(pf.duration * tb), FPS_OUT):
            frames.append(rgb(pf))
        n += len(np.stack(frames)) if frames else 0
    return n


def measure(path: Path, rounds: int, threads: int, short_side: int, chunk_frames: int) -> None:
    p = str(path)
    fns = {
        "floor": lambda: floor(p, threads),
        "floor SLICE": lambda: floor(p, threads, "SLICE"),
        "floor FRAME": lambda: floor(p, threads, "FRAME"),
        "engine": lambda: engine(p, threads, short_side, chunk_frames),
        "engine, no skipping": lambda: engine(p, threads, short_side, chunk_frames, skip_nonref=False),
        "previous engine": lambda: previous_engine(p, threads, short_side, chunk_frames),
    }
    counts = {k: fn() for k, fn in fns.items()}  # warm the page cache and the libraries; frame counts
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    load0 = os.getloadavg()[0]
    names = list(fns)
    for r in range(rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            t0, c0 = time.perf_counter(), time.process_time()
            fns[k]()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    med_w = {k: statistics.median(v) for k, v in wall.items()}
    med_c = {k: statistics.median(v) for k, v in cpu.items()}
    import av
    with av.open(p) as c:
        s = c.streams.video[0]
        what = f"{s.codec_context.width}x{s.codec_context.height}, {float(s.average_rate):g} fps, {s.frames} frames"
    print(f"\n{path.name}: {what}; {threads} decoder threads; 4 fps, short side {short_side}; median of {rounds} "
          f"interleaved rounds; load average {load0:.1f} -> {os.getloadavg()[0]:.1f} (2 cores)")
    print(f"{'path':22s} {'frames':>6s} {'wall s':>8s} {'x floor':>8s} {'cpu s':>8s} {'x floor':>8s}")
    for k in fns:
        print(f"{k:22s} {counts[k]:6d} {med_w[k]:8.3f} {med_w[k] / med_w['floor']:8.3f} {med_c[k]:8.3f} "
              f"{med_c[k] / med_c['floor']:8.3f}")
    print(f"engine / floor: {med_w['engine'] / med_w['floor']:.3f} (wall), previous engine / floor: "
          f"{med_w['previous engine'] / med_w['floor']:.3f} (wall)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2, help="decoder threads (the same for every path)")
    ap.add_argument("--seconds", type=float, default=64.0, help="clip length (>= 60)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .common import engine_decode_settings
    d = engine_decode_settings()
    short, chunk = int(d.get("short_side", 256)), int(d.get("chunk_frames", 32))
    for b_frames in (3, 0):
        measure(clip(args.seconds, b_frames), args.rounds, args.threads, short, chunk)


if __name__ == "__main__":
    main()
