"""``python -m benchmarks.dali_cpu``: the DALI backend on DALI's CPU reader vs PyAV, on VP9, side by side.

- speed: a 60 s 640x360 25 fps VP9 clip, every frame and 4 fps, short side 256, same decoder threads (2);
  interleaved rounds, medians; ratio = PyAV seconds / DALI seconds (> 1: DALI faster).
- memory: a 600 s 160x96 VP9 clip decoded whole by each backend in a fresh process; the process's RSS at each
  tenth of the film and its peak (``VmHWM``). Flat means the last tenths are no higher than the first ones.

Not part of ``benchmarks.run``: DALI is an extra, and on a CPU it is the proof path, not the production decoder.
The clips are generated once under ``benchmarks/.work`` (git-ignored).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from .common import PROJECT_ROOT, WORK, OtherWork, interleaved, median


def _clip(name: str, seconds: float, size: tuple[int, int]) -> str:
    from engine.media import write_media
    path = WORK / f"dali-{name}.webm"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        base = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        tmp = path.with_suffix(".tmp.webm")
        write_media(str(tmp), seconds, fps=25, size=size, codec="libvpx-vp9", container="webm",
                    frame_fn=lambda t: np.roll(base, int(t * 50), axis=1))
        tmp.rename(path)
    return str(path)


def _count(path: str, backend: str, fps: float | None) -> int:
    from engine.decode import iter_frames, probe
    return sum(len(c.t) for c in iter_frames(path, fps, backend=backend, info=probe(path), short_side=256,
                                             chunk_frames=32, threads=2, device="cpu"))


def _memory_child(path: str, backend: str) -> None:
    """In a fresh process: decode every frame, print RSS at each tenth of the film and VmHWM as JSON."""
    from engine.decode import iter_frames, probe
    info = probe(path)
    marks, next_mark = [], 0.1
    for c in iter_frames(path, None, backend=backend, info=info, short_side=256, chunk_frames=32, threads=2,
                         device="cpu"):
        if c.t[-1] >= next_mark * info.duration_s:
            marks.append(_status("VmRSS"))
            next_mark += 0.1
    print(json.dumps({"rss_mib": marks, "peak_mib": _status("VmHWM")}))


def _status(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    short = _clip("60s-640x360", 60.0, (640, 360))
    long = _clip("600s-160x96", 600.0, (160, 96))
    frames = {}

    def run(name, backend, fps):
        def go():
            frames[name] = _count(short, backend, fps)
        return go

    fns = {"dali every frame": run("dali every frame", "dali", None), "pyav every frame": run("pyav every frame",
                                                                                              "pyav", None),
           "dali 4 fps": run("dali 4 fps", "dali", 4.0), "pyav 4 fps": run("pyav 4 fps", "pyav", 4.0)}
    fns["dali every frame"]()  # warm up: page cache, codec libraries, DALI's first pipeline
    secs, other = interleaved(fns, 3)
    med = {k: median(v) for k, v in secs.items()}
    print(f"60 s VP9 640x360 25 fps ({frames['pyav every frame']} frames), short side 256, 2 threads, median of 3 "
          f"interleaved rounds; other processes used {other:.0%} of the CPU meanwhile")
    for k in ("every frame", "4 fps"):
        d, p = med[f"dali {k}"], med[f"pyav {k}"]
        print(f"  {k:12} DALI-cpu {d:6.2f} s ({1500 / d:5.0f} source frames/s), PyAV {p:6.2f} s "
              f"({1500 / p:5.0f} source frames/s): PyAV / DALI = {p / d:.2f}; frames out "
              f"{frames[f'dali {k}']} vs {frames[f'pyav {k}']}")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    for backend in ("dali", "pyav"):
        t0, ow = time.perf_counter(), OtherWork()
        out = subprocess.run([sys.executable, "-m", "benchmarks.dali_cpu", "--memory", long, backend], env=env,
                             capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rss = r["rss_mib"]
        print(f"600 s VP9 160x96, {backend}: {time.perf_counter() - t0:.0f} s, RSS at 10%, 20%, ... 90% of the film "
              f"{[round(x) for x in rss]} MiB, peak {r['peak_mib']:.0f} MiB; last three tenths vs first three: "
              f"{max(rss[-3:]) - max(rss[:3]):+.0f} MiB (other processes {ow.done()['other_share']:.0%})")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--memory":
        _memory_child(sys.argv[2], sys.argv[3])
    else:
        main()
