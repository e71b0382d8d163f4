"""``decode_vs_plain``: the engine's CPU decoder vs a plain full decode of the same file, same decoder threads.

- plain: PyAV, ``thread_type="AUTO"``, every frame decoded and converted with ``to_ndarray(format="rgb24")`` at
  its native size (what most feature scripts do).
- engine at 4 fps: ``iter_frames_pyav(path, 4.0)`` with the configured short side (every frame is still decoded,
  only the frames on the grid are converted, and scaled in the same swscale pass).
- engine at every frame: ``iter_frames_pyav(path, None, short_side=0)``: the same output as plain (native size,
  every frame), so this ratio is the engine's own overhead (time grid, chunking).
- decode only: PyAV decoding every frame without converting it (for information: the floor).
- ffmpeg CLI ``ffmpeg -threads N -i f -f null -`` (decode only, no RGB), only when ``ffmpeg`` is installed.

Rounds interleaved (the order alternates), medians. Ratio = plain seconds / engine seconds (> 1: engine faster).
"""
from __future__ import annotations

import shutil
import subprocess

from .common import Context, Ratio, engine_decode_settings, interleaved, items_of, median


def plain_decode(path: str, threads: int, rgb: bool = True) -> int:
    import av
    n = 0
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        s.codec_context.thread_count = threads
        for f in c.decode(s):
            if rgb:
                f.to_ndarray(format="rgb24")
            n += 1
    return n


def engine_decode(path: str, fps: float | None, short_side: int, threads: int, chunk_frames: int) -> int:
    from engine.decode import iter_frames_pyav
    return sum(len(c.t) for c in iter_frames_pyav(path, fps, short_side=short_side, chunk_frames=chunk_frames,
                                                  threads=threads))


def measure(ctx: Context) -> list[Ratio]:
    from engine.decode import probe
    path = max((it.media for it in items_of(ctx.corpus("1x"))), key=lambda p: probe(p).duration_s)
    info = probe(path)
    threads = 2
    d = engine_decode_settings(ctx.mode.extractors)
    short, chunk = int(d.get("short_side", 256)), int(d.get("chunk_frames", 32))
    counts = {}

    def run(name, fn):
        def go():
            counts[name] = fn()
        return go

    fns = {
        "plain": run("plain", lambda: plain_decode(path, threads)),
        "engine 4 fps": run("engine 4 fps", lambda: engine_decode(path, 4.0, short, threads, chunk)),
        "engine every frame": run("engine every frame",
                                  lambda: engine_decode(path, None, 0, threads, chunk)),
        "decode only": run("decode only", lambda: plain_decode(path, threads, rgb=False)),
    }
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        fns["ffmpeg cli"] = lambda: subprocess.run([ffmpeg, "-v", "error", "-threads", str(threads), "-i",
                                                    path, "-f", "null", "-"], check=True)
    fns["plain"]()  # warm the page cache and the codec libraries
    secs, other = interleaved(fns, ctx.mode.decode_rounds)
    med = {k: median(v) for k, v in secs.items()}
    n_src = counts["plain"]
    what = (f"the longest film of the 1x corpus: {info.width}x{info.height}, {info.fps:.0f} fps, "
            f"{info.duration_s:.1f} s, {n_src} frames; {threads} decoder threads; median of "
            f"{ctx.mode.decode_rounds} interleaved rounds")
    notes = [what] + [f"{k}: {med[k]:.3f} s ({n_src / med[k]:.0f} source frames/s, {info.duration_s / med[k]:.1f} "
                      f"media s/s" + (f", {counts[k]} frames out" if k in counts else "") + ")" for k in med]
    notes.append(f"engine at 4 fps takes {med['engine 4 fps'] / med['decode only']:.2f}x the decode-only time (the "
                 "floor for any decoder that must decode every frame)")
    if not ffmpeg:
        notes.append("ffmpeg CLI: not installed, skipped")
    else:
        notes.append(f"ffmpeg CLI (decode only, no RGB) vs plain PyAV: {med['plain'] / med['ffmpeg cli']:.2f}x")
    details = {"seconds": secs, "medians": med, "frames": counts, "file": path}
    return [
        Ratio("decode_vs_plain", f"engine `iter_frames_pyav` at 4 fps (short side {short}) vs plain PyAV decode of "
                                 "every frame to RGB at native size, same file, same threads",
              "engine 4 fps s", med["engine 4 fps"], "plain s", med["plain"], "s (ratio = plain / engine)",
              med["plain"] / med["engine 4 fps"], None, notes, details, {"a": other, "b": other}),
        Ratio("decode_vs_plain_every_frame", "engine `iter_frames_pyav` at every frame, native size (same output "
                                             "as plain) vs plain PyAV, same file, same threads",
              "engine every-frame s", med["engine every frame"], "plain s", med["plain"],
              "s (ratio = plain / engine)", med["plain"] / med["engine every frame"], None, [], {},
              {"a": other, "b": other}),
    ]
