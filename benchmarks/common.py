"""Shared pieces of the benchmarks: modes, generated corpora, timing, child processes, memory probes, records.

Every number the benchmarks report is a ratio of two things measured side by side in the same run on the same
machine; absolute seconds are printed for context only.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger("benchmarks")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORK = PROJECT_ROOT / "benchmarks" / ".work"  # git-ignored: corpora, stores, scratch
CHEAP = "frame_stats,logmel,e5_small"          # real extractors without a CNN: decode and plumbing dominate
DEFAULT = "efficientnet_lite0,logmel,e5_small"  # the engine's default groups (configs/extract.yaml)


@dataclass(frozen=True)
class Mode:
    """Sizes of one benchmark mode. ``films``: distinct demo-like films in the 1x corpus (the 4x corpus holds four
    copies of each)."""

    name: str
    extractors: str             # engine + sequential + stage measurements
    films: int
    film_size: tuple[int, int]  # frame size of the 1x/4x corpora
    decode_rounds: int
    reader_items: int
    reader_total_s: float       # media seconds of the reader's store, spread over its items
    reader_windows: int         # random windows per round
    reader_rounds: int
    rss_extractors: str         # the 60 s / 640 s memory test
    clips: int                  # generated static clips extracted by the engine and the plain loop
    # durations of the EmoS-scale film corpus (the engine vs the usual loop, and vs the CPU bound); empty: the 1x
    # corpus serves
    emos_films: tuple[float, ...] = ()
    long_s: float = 640.0
    short_s: float = 60.0


# Durations (s) of 13 of the release's 46 films: every fourth by length, from the shortest (The Imitation Game,
# 25.7 s) to 走着瞧 (280.8 s), and the longest, 黑冰 (639.2 s); 2,032 s in all (the 46 last 5,728 s).
EMOS_DURATIONS = (25.7, 59.99, 71.52, 77.18, 81.96, 94.16, 102.48, 110.79, 130.54, 151.64, 206.21, 280.83, 639.22)

MODES = {
    "quick": Mode("quick", CHEAP, films=3, film_size=(640, 360), decode_rounds=3, reader_items=24,
                  reader_total_s=2400.0, reader_windows=2000, reader_rounds=5, rss_extractors=CHEAP, clips=300),
    "full": Mode("full", DEFAULT, films=9, film_size=(640, 360), decode_rounds=7, reader_items=46,
                 reader_total_s=7200.0, reader_windows=5000, reader_rounds=9, rss_extractors=DEFAULT, clips=2000,
                 emos_films=EMOS_DURATIONS),
}


# ------------------------------------------------------------------------------------------------ records
DISTURBED = 0.10  # share of the machine's CPU used by other processes above which a measurement is flagged

@dataclass
class Ratio:
    """One result: the ratio of ``a`` and ``b`` (``a / b`` unless ``unit`` says otherwise), both raw numbers, and
    the target it is held to (None: reported for information)."""

    key: str
    compared: str     # what a and b are, in words
    a_label: str
    a: float
    b_label: str
    b: float
    unit: str
    ratio: float
    target: str | None  # ">= 0.85", "< 0.05", ...
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    other: dict[str, float] = field(default_factory=dict)  # {"a", "b"}: share of the CPU other processes used

    @property
    def disturbed(self) -> bool:
        """Other processes took a real share of the machine while a side was measured: re-run before trusting."""
        return max(self.other.values(), default=0.0) > DISTURBED

    @property
    def met(self) -> bool | None:
        if not self.target:
            return None
        op, _, val = self.target.partition(" ")
        v = float(val.rstrip("x"))
        return {">=": self.ratio >= v, "<=": self.ratio <= v, "<": self.ratio < v, ">": self.ratio > v}[op]

    def to_json(self) -> dict:
        return {**asdict(self), "met": self.met, "disturbed": self.disturbed}


# ------------------------------------------------------------------------------------------------ timing
def median(xs) -> float:
    return float(statistics.median(xs))


def fmt(x, spec: str = ".2f") -> str:
    """A number for a note, ``n/a`` when missing."""
    return "n/a" if x is None else format(x, spec)


def timed(fn: Callable, *args, **kw) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t0, out


def interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> tuple[dict[str, list[float]], float]:
    """Run each callable once per round, side by side, alternating the order every round. Returns the seconds of
    each call, and the share of the CPU other processes used meanwhile (:class:`OtherWork`)."""
    names = list(fns)
    out: dict[str, list[float]] = {n: [] for n in names}
    other = OtherWork()
    for r in range(rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            out[n].append(timed(fns[n])[0])
    return out, other.done()["other_share"]


# ------------------------------------------------------------------------------------------------ machine
def machine_info() -> dict:
    mem_kb = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                                    capture_output=True, text=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str:  # without importing: the benchmark process stays small
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"
    return {
        "cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
        "cpu": _cpu_model(), "platform": platform.platform(), "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "git_commit": commit + ("+dirty" if dirty else ""),
        "versions": {name: ver(name) for name in ("torch", "av", "ray", "zarr", "numpy")},
        "ffmpeg_cli": shutil.which("ffmpeg"),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ------------------------------------------------------------------------------------------------ corpora
def _complete(path: Path, key: dict) -> bool:
    marker = path / ".complete"
    return marker.exists() and json.loads(marker.read_text()) == key


def _scratch(path: Path) -> Path:
    """A fresh temporary folder beside ``path`` to generate it in (published whole by :func:`_publish`)."""
    tmp = WORK / f".tmp-{path.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def _monologue(duration_s: float, sentences: list) -> list:
    """Sentences cycled to fill ``duration_s`` for ``write_film`` (its 0.3 s lead-in and tail, a 0.4 s gap after
    each sentence): one every 4 s."""
    n, rest = divmod(duration_s - 0.6, 4.0)
    lengths = [3.6] * int(n) + ([rest - 0.4] if rest > 0.9 else [])
    return [(*sentences[k % len(sentences)][:2], d) for k, d in enumerate(lengths)]


def _publish(tmp: Path, path: Path, key: dict) -> Path:
    (tmp / ".complete").write_text(json.dumps(key))
    if path.exists():
        shutil.rmtree(path)
    os.rename(tmp, path)
    return path


def demo_corpus(n_films: int, size: tuple[int, int]) -> Path:
    """An EmoS-layout root with ``n_films`` films like the embedded demo's (its layout, sentences, timestamps,
    labels and durations, written by ``engine.datasets.demo.write_film``), whose media are :func:`write_textured`
    films at frame size ``size``; film k > 2 reuses demo film k % 3 under a new name. Cached under
    ``benchmarks/.work`` (regenerated when the parameters change)."""
    from engine.datasets.demo import FILMS, write_film
    key = {"kind": "demo", "films": n_films, "size": list(size), "v": 2}
    path = WORK / f"corpus-demo-{n_films}-{size[0]}x{size[1]}"
    if _complete(path, key):
        return path
    tmp = _scratch(path)
    demo = list(FILMS.items())
    for k in range(n_films):
        folder, (lang, title, sentences) = demo[k % len(demo)]
        suffix = f" {k // len(demo) + 1}" if k >= len(demo) else ""
        film = write_film(tmp, folder + suffix, lang, title + suffix, sentences, media=False)
        duration = json.loads((film / "sentence_level_timestamps.json").read_text())["duration"]
        write_textured(film / f"{film.name}.mp4", duration, size, seed=k)
    return _publish(tmp, path, key)


def films_corpus(durations: tuple[float, ...], size: tuple[int, int]) -> Path:
    """An EmoS-layout root with one monologue per duration (demo sentences cycled, one every 4 s), its media a
    :func:`write_textured` film (H.264 with B-frames, AAC) at frame size ``size``. Cached under ``benchmarks/.work``."""
    from engine.datasets.demo import FILMS, write_film
    key = {"kind": "films", "durations": list(durations), "size": list(size), "v": 1}
    path = WORK / f"corpus-films-{len(durations)}-{size[0]}x{size[1]}"
    if _complete(path, key):
        return path
    tmp = _scratch(path)
    demo = list(FILMS.values())
    for k, duration_s in enumerate(durations):
        lang, _, demo_sentences = demo[k % len(demo)]
        folder = f"Film {k + 1:02d} {int(duration_s)}s"
        film = write_film(tmp, folder, lang, folder, _monologue(duration_s, demo_sentences), media=False)
        duration = json.loads((film / "sentence_level_timestamps.json").read_text())["duration"]
        write_textured(film / f"{folder}.mp4", duration, size, seed=k)
    return _publish(tmp, path, key)


def replicate(root: Path, copies: int) -> Path:
    """``copies`` copies of every film of ``root`` under new names (media hard-linked, metadata copied): a corpus
    ``copies`` times larger with the same content, so per-second costs are comparable."""
    from engine.datasets.emos_stream import STREAM_DIR
    key = {"kind": "replica", "of": root.name, "copies": copies, "v": 1}
    path = WORK / f"{root.name}-x{copies}"
    if _complete(path, key):
        return path
    tmp = _scratch(path)
    for film in sorted(p for p in (root / STREAM_DIR).iterdir() if p.is_dir()):
        for c in range(copies):
            name = f"{film.name} copy{c + 1}"
            dst = tmp / STREAM_DIR / name
            dst.mkdir(parents=True)
            os.link(film / f"{film.name}.mp4", dst / f"{name}.mp4")
            shutil.copy2(film / "sentence_level_timestamps.json", dst / "sentence_level_timestamps.json")
            shutil.copy2(film / f"{film.name}.emotion.json", dst / f"{name}.emotion.json")
    return _publish(tmp, path, key)


def long_film(duration_s: float, size: tuple[int, int] = (160, 120), fps: float = 25.0) -> Path:
    """An EmoS-layout root with one monologue of about ``duration_s`` seconds (demo sentences, cycled), cheap
    media: a fixed noisy picture with a moving bar and a tone (44.1 kHz AAC)."""
    from engine.datasets.demo import FILMS, write_film
    from engine.media import write_media
    key = {"kind": "long", "s": duration_s, "size": list(size), "fps": fps, "v": 2}
    path = WORK / f"corpus-long-{int(duration_s)}s-{size[0]}x{size[1]}"
    if _complete(path, key):
        return path
    tmp = _scratch(path)
    lang, _, demo_sentences = FILMS["Harbor Lights"]
    sentences = _monologue(duration_s, demo_sentences)
    folder = f"Long {int(duration_s)}s"
    film_dir = write_film(tmp, folder, lang, folder, sentences, fps=fps, size=size, media=False)
    duration = json.loads((film_dir / "sentence_level_timestamps.json").read_text())["duration"]
    w, h = size
    picture = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)

    def frame(t: float) -> np.ndarray:
        img = picture.copy()
        x = int(t / duration * (w - 8))
        img[h // 2 - 4:h // 2 + 4, x:x + 8] = 255
        return img

    write_media(str(film_dir / f"{folder}.mp4"), duration, fps=fps, size=size, frame_fn=frame,
                audio_fn=lambda t: (0.25 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), audio_rate=44100)
    return _publish(tmp, path, key)


def write_textured(path: Path, duration_s: float, size: tuple[int, int], fps: int = 25, seed: int = 0,
                   audio_rate: int = 44100) -> None:
    """An mp4 encoded the way films are (H.264 by x264 preset veryfast: CABAC, deblocking, B-frames; AAC audio), of
    moving gradients with fresh grain in every frame, so that decoding costs about what it costs on real footage
    (~860 frames/s at 640x360 on 2 threads here). The engine's test media (``engine.media.write_media``: ultrafast,
    no B-frames) of near-static pictures decode 5-10x faster than any real film, which would leave little but the
    RGB conversion to measure. The sound is a tone with a slow vibrato."""
    import av
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = (a.astype(np.uint8) for a in np.mgrid[0:h, 0:w])  # uint8: the gradients wrap around by themselves
    grain = rng.integers(0, 25, (29, h, w, 3), dtype=np.uint8)  # a 29-frame cycle of grain
    with av.open(str(path), "w", format="mp4") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "23"}
        aus = c.add_stream("aac", rate=audio_rate, layout="mono") if audio_rate else None
        for k in range(int(round(duration_s * fps))):
            shift = [np.uint8(3 * k % 256), np.uint8(2 * k % 256), np.uint8(k % 256)]
            img = np.stack([xx + shift[0], yy + shift[1], (xx >> 1) + (yy >> 1) + shift[2]], -1)
            frame = av.VideoFrame.from_ndarray(img + grain[k % len(grain)], format="rgb24")
            frame.pts = k
            for pkt in vs.encode(frame):
                c.mux(pkt)
        for pkt in vs.encode():
            c.mux(pkt)
        if aus is None:
            return
        n, step = int(round(duration_s * audio_rate)), 1024
        for i in range(0, n, step):
            t = np.arange(i, min(n, i + step)) / audio_rate
            wave = 0.25 * np.sin(2 * np.pi * 220 * t * (1 + 0.02 * np.sin(2 * np.pi * 0.3 * t)))
            af = av.AudioFrame.from_ndarray(wave.astype(np.float32)[None, :], format="fltp", layout="mono")
            af.sample_rate, af.pts = audio_rate, i
            for pkt in aus.encode(af):
                c.mux(pkt)
        for pkt in aus.encode():
            c.mux(pkt)


def items_of(root: Path):
    """Discovered stream items of a generated root (all must be usable)."""
    from engine.config import load_config
    from engine.datasets import discover
    items = discover("stream", root, load_config())
    bad = [it.error.line() for it in items if it.error]
    if bad:
        raise RuntimeError(f"generated corpus {root} has bad items: {bad}")
    return items


def media_seconds(items) -> float:
    from engine.decode import probe
    return sum(probe(it.media).duration_s for it in items)


# ------------------------------------------------------------------------------------------------ engine plans
def make_plan(out: Path, extractors: str, threads: int = 0, split: str = "stream"):
    """The :class:`RunPlan` that ``python -m engine.extract --split SPLIT --extractors ...`` builds (defaults from
    the config and the dataset: decode backend, precision, pooling, items per task)."""
    from engine.config import load_config
    from engine.datasets import get_dataset
    from engine.extract import make_groups, resolve_decode, resolve_short_side
    from engine.records import RunPlan
    cfg, dataset = load_config(), get_dataset(split)
    decode, precision = resolve_decode(cfg)
    groups = make_groups(cfg, extractors, decode, precision)
    decode["short_side"] = resolve_short_side(cfg["decode"]["short_side"], [g.spec for g in groups])
    return RunPlan(out=str(out), split=split, groups=groups, decode=decode,
                   store_dtype=cfg["store"]["dtype"],
                   duration_tolerance_s=float(cfg.get("stream", {}).get("duration_tolerance_s", 1.0)),
                   half_precision=precision == "fp16", pooled=dataset.clip_level,
                   batch_items=int((cfg["run"].get("items_per_task") or {}).get(split, dataset.items_per_task)),
                   threads=threads or os.cpu_count() or 1)


def engine_decode_settings(extractors: str | None = None) -> dict:
    """The decode settings ``engine.extract`` runs these extractors with (the config's groups when None), with
    ``short_side`` resolved as the engine resolves ``auto``."""
    from engine.config import load_config
    from engine.extract import make_groups, resolve_short_side
    cfg = load_config()
    groups = make_groups(cfg, extractors)
    return {**cfg["decode"], "short_side": resolve_short_side(cfg["decode"]["short_side"], [g.spec for g in groups])}


def engine_threads() -> int:
    """Torch threads per extraction actor on this machine (``engine.pipeline.runner.placement`` without a GPU)."""
    cpus = os.cpu_count() or 1
    n = max(1, cpus // 2)
    return max(1, cpus // n)


# ------------------------------------------------------------------------------------------------ child processes
# Environment of every child process. RAY_ADDRESS=local: the engine's ray.init() (no address) would otherwise join
# any cluster a `ray start` left on this machine, and fail there because it passes num_cpus. RAY_worker_niceness=0:
# Ray starts its workers at niceness 15, so on a machine shared with other work the actor would lose the CPU to it
# while the baselines it is compared with (nice 0) would not.
RAY_ENV = {"RAY_ADDRESS": "local", "RAY_worker_niceness": "0"}


TICK = os.sysconf("SC_CLK_TCK")
UNREAPED_CPU_S = [0.0]  # CPU of our children's descendants that getrusage cannot see (reported by the children)


def own_cpu_s(children: bool) -> float:
    """CPU seconds of this process (and of its reaped descendants)."""
    import resource
    who = [resource.RUSAGE_SELF] + ([resource.RUSAGE_CHILDREN] if children else [])
    return sum(r.ru_utime + r.ru_stime for r in map(resource.getrusage, who))


def speed_probe(rounds: int = 5) -> float:
    """Milliseconds that a fixed piece of one-thread work takes now (median of ``rounds``; lower is faster): a
    Python integer loop and a numpy sort. On a shared host this machine's own speed drifts by tens of percent
    within minutes without showing as steal time or as other processes' CPU (:class:`OtherWork`); taken before
    and after each measurement, it shows when two sides of a ratio may have run at different speeds."""
    data = np.random.default_rng(0).random(200_000).astype(np.float32)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        s = 0
        for i in range(150_000):
            s += i * i
        np.sort(data)
        times.append((time.perf_counter() - t) * 1e3)
    return round(statistics.median(times), 2)


class OtherWork:
    """CPU seconds the rest of the machine used while a measurement ran: busy time from ``/proc/stat`` minus this
    process's and its reaped children's (``getrusage``). Approximate (a process that outlives its parent counts as
    other work), but it tells a quiet run from one that shared the machine with someone else's tests."""

    def __init__(self):
        self.busy0, self.ours0, self.t0 = self._busy(), self._ours(), time.perf_counter()

    @staticmethod
    def _busy() -> float:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
        return (sum(f[:8]) - f[3] - f[4]) / TICK  # all but idle and iowait

    @staticmethod
    def _ours() -> float:
        return own_cpu_s(children=True) + UNREAPED_CPU_S[0]

    def done(self) -> dict:
        wall = time.perf_counter() - self.t0
        other = max(0.0, (self._busy() - self.busy0) - (self._ours() - self.ours0))
        return {"wall_s": round(wall, 1), "other_cpu_s": round(other, 1),
                "other_share": round(other / max(1e-9, wall * (os.cpu_count() or 1)), 3)}


def run_child(args: list[str], timeout_s: float = 900.0) -> dict:
    """Run ``python -m benchmarks.child ARGS`` in a fresh process; its JSON result (with ``peak_rss_mib``, the
    child's own ``VmHWM``) plus ``process_s``, the process's wall time, interpreter start-up included, and
    ``other_share``, the share of the CPU other processes used meanwhile (:class:`OtherWork`).

    Why not ``ru_maxrss`` (``wait4``, ``RUSAGE_CHILDREN``): on Linux a child's ``ru_maxrss`` starts from its
    parent's peak RSS at fork (exec keeps the larger of the two), so a child of a 1.3 GiB benchmark process reports
    at least 1.3 GiB whatever it does. ``VmHWM`` belongs to the address space exec creates, so it is the child's own.
    """
    res_path = WORK / f"child-{os.getpid()}-{time.monotonic_ns()}.json"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"), **RAY_ENV}
    t0, other = time.perf_counter(), OtherWork()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.child", str(res_path), *args], cwd=PROJECT_ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s)
    process_s = time.perf_counter() - t0
    if proc.returncode != 0 or not res_path.exists():
        text = proc.stdout.decode(errors="replace")
        raise RuntimeError(f"benchmark child {args[:1]} failed (exit {proc.returncode}):\n{text[-4000:]}")
    result = json.loads(res_path.read_text())
    res_path.unlink()
    UNREAPED_CPU_S[0] += result.get("unreaped_cpu_s", 0.0)
    result["process_s"] = process_s
    result["other_share"] = other.done()["other_share"]
    return result


def own_memory_mib() -> dict:
    """This process's current RSS, its anonymous part, and its peak (``VmHWM``), in MiB."""
    with open("/proc/self/status") as fh:
        status = dict(line.split(":", 1) for line in fh if ":" in line)
    return {k: int(status[k].split()[0]) / 1024.0 for k in ("VmRSS", "RssAnon", "VmHWM")}


class ProcessTreeMemory:
    """Polls ``/proc`` for every descendant of a process (Ray's gcs_server, raylet and workers when the process
    started Ray) and keeps, per process, its peak resident set (``VmHWM``, a peak the kernel keeps, so a
    process that has exited keeps the value of its last sample), the largest anonymous (private heap) part seen
    (``RssAnon``, sampled: a peak between two samples can be missed), its niceness and its command line (Ray names
    a worker by its actor, e.g. ``ray::ExtractionActor.process``). Also the largest sum of current ``VmRSS`` over
    the tree. RSS counts the file-backed pages of loaded libraries (the CUDA build of torch maps several hundred
    MiB), which is why ``RssAnon`` is reported beside it."""

    def __init__(self, root_pid: int | None = None, interval_s: float = 0.2):
        self.root = root_pid or os.getpid()
        self.interval = interval_s
        self.peaks: dict[int, dict] = {}
        self.max_tree_rss_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-poll")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _descendants(self) -> list[int]:
        parent: dict[int, int] = {}
        self._nice: dict[int, int] = {}
        self._cpu: dict[int, float] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            fields = stat[stat.rindex(b")") + 2:].split()
            parent[int(name)] = int(fields[1])
            self._nice[int(name)] = int(fields[16])
            self._cpu[int(name)] = (int(fields[11]) + int(fields[12])) / TICK
        out, frontier = [], {self.root}
        while frontier:
            kids = {p for p, pp in parent.items() if pp in frontier}
            out.extend(kids)
            frontier = kids
        return out

    def sample(self) -> None:
        total = 0
        for pid in self._descendants():
            try:
                with open(f"/proc/{pid}/status") as fh:
                    status = dict(line.split(":", 1) for line in fh if ":" in line)
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            kib = {k: int(status.get(k, "0 kB").split()[0]) for k in ("VmHWM", "VmRSS", "RssAnon")}
            total += kib["VmRSS"]
            p = self.peaks.setdefault(pid, {"cmd": cmd, "hwm_kib": 0, "anon_kib": 0})
            p["hwm_kib"] = max(p["hwm_kib"], kib["VmHWM"])
            p["anon_kib"] = max(p["anon_kib"], kib["RssAnon"])
            p["nice"] = self._nice.get(pid)
            p["cpu_s"] = max(p.get("cpu_s", 0.0), self._cpu.get(pid, 0.0))
            if cmd.startswith("ray::"):  # a worker's title changes as it takes on an actor
                p["cmd"] = cmd
        self.max_tree_rss_kib = max(self.max_tree_rss_kib, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def summary(self, actor_prefix: str = "ray::ExtractionActor") -> dict:
        actors = [p["hwm_kib"] for p in self.peaks.values() if p["cmd"].startswith(actor_prefix)]
        anon = [p["anon_kib"] for p in self.peaks.values() if p["cmd"].startswith(actor_prefix)]
        return {
            "actor_peak_anon_mib": max(anon) / 1024.0 if anon else None,
            "actor_processes": len(actors),
            "actor_niceness": sorted({p["nice"] for p in self.peaks.values() if p["cmd"].startswith(actor_prefix)}),
            "actor_peak_rss_mib": max(actors) / 1024.0 if actors else None,
            "descendants_seen": len(self.peaks),
            "descendants_cpu_s": sum(p.get("cpu_s", 0.0) for p in self.peaks.values()),
            "largest_other_descendant_mib": max([p["hwm_kib"] for p in self.peaks.values()
                                                 if not p["cmd"].startswith(actor_prefix)] or [0]) / 1024.0,
            "tree_peak_rss_sum_mib": self.max_tree_rss_kib / 1024.0,
        }


# ------------------------------------------------------------------------------------------------ engine runs
class Context:
    """What several measurements share in one benchmark run: the mode, generated corpora, and the engine runs
    (each run once and reused, e.g. the cold 1x run serves four ratios)."""

    def __init__(self, mode: Mode):
        self.mode = mode
        self._corpora: dict[str, Path] = {}
        self._runs: dict[tuple, dict] = {}
        self._once: dict[str, object] = {}
        self.generation_s: dict[str, float] = {}
        self._primed = False

    def corpus(self, name: str, make: Callable[[], Path] | None = None) -> Path:
        """``1x`` (demo-like films), ``4x`` (four copies of each), ``short`` and ``long`` (one cheap film each), or
        any other that ``make`` generates (timed once, like these)."""
        if name not in self._corpora:
            m = self.mode
            makers = {"1x": lambda: demo_corpus(m.films, m.film_size),
                      "films": lambda: films_corpus(m.emos_films, m.film_size),
                      "4x": lambda: replicate(self.corpus("1x"), 4),
                      "short": lambda: long_film(m.short_s), "long": lambda: long_film(m.long_s)}
            dt, self._corpora[name] = timed(make or makers[name])
            self.generation_s[name] = round(dt, 2)
        return self._corpora[name]

    def once(self, key: str, measure: Callable[[], object]):
        """``measure()``, run the first time ``key`` is asked for and reused after (a measurement two ratios
        share, such as the stages alone)."""
        if key not in self._once:
            self._once[key] = measure()
        return self._once[key]

    @property
    def films(self) -> str:
        """The film corpus the engine is compared on with the usual loop: EmoS-scale where the mode has one."""
        return "films" if self.mode.emos_films else "1x"

    def store_dir(self, corpus: str) -> Path:
        return WORK / f"out-{self.mode.name}-{corpus}"

    def prime(self) -> None:
        """Once per benchmark run, before the first timed child process: the engine, untimed, on the 60 s film
        with the mode's extractors, so that torch, Ray, the decoders and the models are in memory for whichever
        side runs first. This machine's host takes memory from an idle guest: the first engine run after a few
        idle minutes read them back (Ray's start 5.7 and 12.5 s instead of 2.6, its first film back 17 and 14 s
        after the actors were asked for instead of 4), while the baseline, run next, found them in memory."""
        if self._primed:
            return
        self._primed = True
        out = WORK / f"out-{self.mode.name}-prime"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        run_child(["engine", "--split", "stream", "--root", str(self.corpus("short")), "--out", str(out),
                   "--extractors", self.mode.extractors, "--quiet"])
        log.info("primed: the engine on the 60 s film in %.1f s (not timed)", time.perf_counter() - t)

    def engine_run(self, corpus: str, warm: bool = False) -> dict:
        """``engine.extract.main`` on a corpus in a fresh process: cold (into an empty output folder) or warm (a
        second run on the cold run's output, nothing changed). Memoised."""
        key = (corpus, warm)
        if key not in self._runs:
            out = self.store_dir(corpus)
            if warm:
                self.engine_run(corpus)
            else:
                shutil.rmtree(out, ignore_errors=True)
            root = self.corpus(corpus)
            argv = ["--split", "stream", "--root", str(root), "--out", str(out),
                    "--extractors", self.mode.extractors, "--quiet"]
            self.prime()
            log.info("engine run: %s corpus, %s", corpus, "warm" if warm else "cold")
            self._runs[key] = run_child(["engine", *argv])
        return self._runs[key]
