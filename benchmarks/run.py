"""``python -m benchmarks.run [--quick] [--out-dir benchmarks] [--only reader,decode,...] [--keep]``

Generates its corpora under ``benchmarks/.work`` (git-ignored; reused while their parameters are unchanged), runs
each measurement, prints a table of ratios and writes ``RESULTS.md`` and ``results.json`` to ``--out-dir``.
With ``--keep``, the ratios of the previous ``results.json`` that this run does not measure stay in both files,
each noted as kept from its run (to re-measure one disturbed measurement on a shared machine).
Every ratio compares two things measured side by side in this run; nothing here asserts a wall time.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import traceback
from pathlib import Path

from . import clips, decode, memory, pipeline, reader, scaling, sequential, warm
from .common import (CHEAP, DEFAULT, DISTURBED, MODES, PROJECT_ROOT, WORK, Context, OtherWork, Ratio, machine_info,
                     speed_probe)

log = logging.getLogger("benchmarks")
EXTRACTOR_SETS = {
    CHEAP: "cheap but real: per-frame statistics, torchaudio log-mel, multilingual-e5-small; no CNN, so decoding and "
           "plumbing dominate",
    DEFAULT: "the engine's default groups: EfficientNet-Lite0 ImageNet, torchaudio log-mel, multilingual-e5-small",
}

# in this order: cheap first, then the runs the engine measurements share (memoised in the Context)
MEASUREMENTS = {"reader": reader, "decode": decode, "pipeline": pipeline, "sequential": sequential,
                "warm": warm, "scaling": scaling, "memory": memory, "clips": clips}


def _kept(r: Ratio) -> bool:
    return bool(r.notes) and r.notes[0].startswith("kept from the run of")


def _met(r: Ratio) -> str:
    return {True: "yes", False: "NO", None: "-"}[r.met] + (" (disturbed)" if r.disturbed else "")


def _other(r: Ratio) -> str:
    return "/".join(f"{r.other[k]:.0%}" for k in ("a", "b") if k in r.other) or "-"


def table(results: list[Ratio]) -> str:
    head = ("ratio", "a", "b", "value", "target", "met", "other CPU a/b")
    rows = [(r.key, f"{r.a:.4g} {r.a_label}", f"{r.b:.4g} {r.b_label}", f"{r.ratio:.3f}", r.target or "-",
             _met(r), _other(r)) for r in results]
    widths = [max(len(x[i]) for x in (head, *rows)) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in (head, *rows))


def _speed(load: dict) -> list[str]:
    """The speed probe's line of RESULTS.md: before -> after each measurement of this run."""
    probes = {k: v["speed_probe_ms"] for k, v in load.items() if "speed_probe_ms" in v}
    if not probes:
        return []
    return ["- one-thread speed probe (`common.speed_probe`: ms, lower is faster) before -> after each measurement: "
            + ", ".join(f"{k} {p['before']:.1f} -> {p['after']:.1f}" for k, p in probes.items())
            + "; this machine's own speed, which other tenants of its host change without it showing as other CPU: "
            "a measurement whose probe moved by more than ~15% may have run its two sides at different speeds"]


def results_md(mode: str, info: dict, results: list[Ratio], errors: dict, wall_s: float, ctx: Context,
               load: dict) -> str:
    m = ctx.mode
    lines = [
        "# Benchmarks", "",
        f"`python -m benchmarks.run{' --quick' if mode == 'quick' else ''}`: {mode} mode, {wall_s:.0f} s wall "
        "in all (corpus generation included).", "",
        "Every number below is a ratio of two things measured side by side in the same run on the same machine; "
        "the raw numbers are shown for context, not as promises.", "",
        *([f"This run measured {', '.join(f'`{r.key}`' for r in results if not _kept(r))}; the other ratios were "
           "kept from an earlier run (`--keep`), each with a note naming it.", ""]
          if any(map(_kept, results)) else []),
        "## Machine", "",
        f"- {info['cores']} cores ({info['cpu']}), {info['memory_gib']} GiB memory, no GPU used",
        f"- {info['platform']}, Python {info['python']}; "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        f"- date: {info['date']}; git commit: `{info['git_commit']}`",
        f"- ffmpeg CLI: {info['ffmpeg_cli'] or 'not installed'}",
        *_speed(load),
        "",
        "## Settings", "",
        f"- extractors for the engine, sequential and stage measurements: `{m.extractors}`"
        + (f" ({EXTRACTOR_SETS[m.extractors]})" if m.extractors in EXTRACTOR_SETS else ""),
        f"- extractors for the 60 s / 640 s memory test: `{m.rss_extractors}`",
        f"- 1x corpus: {m.films} demo-like films (the embedded demo's layout, sentences, labels and durations; "
        f"media: moving textured gradients with grain, {m.film_size[0]}x{m.film_size[1]}, 25 fps, H.264 by x264 "
        "veryfast with B-frames + AAC, so decoding costs about what real footage costs); 4x corpus: four copies of "
        "each film (media hard-linked); 60 s and 640 s films: 160x120, cheap near-static picture (engine.media)",
        *([f"- EmoS-scale film corpus (`speedup_vs_sequential`, `bound_vs_sequential`, `pipeline_efficiency`, "
           f"`cpu_bound_efficiency`): "
           f"{len(m.emos_films)} films with durations of the release's ({sum(m.emos_films):.0f} s in all, "
           f"{min(m.emos_films):.0f}-{max(m.emos_films):.0f} s), media as the 1x corpus's"] if m.emos_films else []),
        f"- clips: {m.clips} generated static clips (MELD and CH-SIMS v2 release layout, xlsx label tables; 1.2-3.6 s, "
        "160x120, 25 fps, H.264 + AAC by engine.media; distinct utterances of the release's lengths), extractors "
        "`frame_stats,logmel,e5_small`; reads: a packed store of 9,400 clips written with ShardWriter",
        f"- corpus generation (s, 0 when reused from benchmarks/.work): {json.dumps(ctx.generation_s)}", "",
        "## Ratios", "",
        "*other CPU a/b*: the share of the machine's CPU that other processes (someone else's tests: the machine is "
        "shared) used while side a and side b were measured, from /proc/stat minus this run's own processes. Above "
        f"{DISTURBED:.0%} the ratio is marked *disturbed*: its two sides did not run on the same machine, so re-run "
        "it before trusting it, whichever way it points.", "",
        "| ratio | compared | a | b | value | target | met | other CPU a/b |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| `{r.key}` | {r.compared} | {r.a:.4g} {r.a_label} | {r.b:.4g} {r.b_label} | "
                     f"**{r.ratio:.3f}** | {r.target or '-'} | {_met(r)} | {_other(r)} |")
    lines += ["", "## Notes per ratio", ""]
    for r in results:
        lines.append(f"### `{r.key}`")
        lines.append("")
        lines += [f"- {n}" for n in r.notes] or ["- (no notes)"]
        lines.append("")
    if errors:
        lines += ["## Measurements that failed", ""]
        lines += [f"- `{k}`: {v.strip().splitlines()[-1]}" for k, v in errors.items()]
        lines.append("")
    lines += ["## How each ratio is measured", ""]
    for name, mod in MEASUREMENTS.items():
        doc = (mod.__doc__ or "").strip()
        lines += [f"**{name}** (`benchmarks/{name}.py`): " + doc, ""]
    return "\n".join(lines)


def with_kept(path: Path, fresh: list[Ratio]) -> list[Ratio]:
    """``fresh`` merged into the ratios of a previous ``results.json``, in its order: a ratio measured now replaces
    the old one, the others are kept with a note naming the run that measured them (a ratio kept once already keeps
    its note: the previous file only carried it over)."""
    if not path.exists():
        return fresh
    old = json.loads(path.read_text())
    m = old["run"]["machine"]
    when = f"kept from the run of {m['date']} ({old['run']['mode']} mode, commit `{m['git_commit']}`)"
    new = {r.key: r for r in fresh}
    fields = set(Ratio.__dataclass_fields__)
    merged = []
    for key, d in old.get("details", {}).items():
        if key in new:
            merged.append(new.pop(key))
            continue
        r = Ratio(**{k: v for k, v in d.items() if k in fields})
        if not _kept(r):
            r.notes = [when] + r.notes
        merged.append(r)
    return merged + list(new.values())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small corpora, few rounds, cheap extractors (< 3 min)")
    p.add_argument("--out-dir", default=str(PROJECT_ROOT / "benchmarks"),
                   help="where RESULTS.md and results.json go (default: benchmarks/)")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(MEASUREMENTS)}")
    p.add_argument("--keep", action="store_true", help="keep the ratios of the previous results.json that this run "
                                                       "does not measure (noted as kept)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("engine", "extractors", "ray"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    mode = "quick" if args.quick else "full"
    names = args.only.split(",") if args.only else list(MEASUREMENTS)
    unknown = set(names) - set(MEASUREMENTS)
    if unknown:
        p.error(f"unknown measurement(s) {sorted(unknown)}; known: {', '.join(MEASUREMENTS)}")
    t0 = time.perf_counter()
    WORK.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    ctx = Context(MODES[mode])
    results: list[Ratio] = []
    errors: dict[str, str] = {}
    load: dict[str, dict] = {}
    for name in names:
        before = speed_probe()
        t, other = time.perf_counter(), OtherWork()
        log.info("measuring %s", name)
        try:
            results += MEASUREMENTS[name].measure(ctx)
        except Exception:  # one broken measurement must not hide the others
            errors[name] = traceback.format_exc()
            log.error("%s failed:\n%s", name, errors[name])
        load[name] = other.done()
        load[name]["speed_probe_ms"] = {"before": before, "after": speed_probe()}
        log.info("%s done in %.1f s (other processes used %.0f%% of the machine; speed probe %.1f -> %.1f ms)", name,
                 time.perf_counter() - t, 100 * load[name]["other_share"], before,
                 load[name]["speed_probe_ms"]["after"])
    wall = time.perf_counter() - t0
    print("\n" + table(results))
    disturbed = [r.key for r in results if r.disturbed]
    print(f"\n{mode} mode: {wall:.0f} s wall" + (f"; FAILED: {', '.join(errors)}" if errors else "")
          + (f"; disturbed by other work on the machine, re-run: {', '.join(disturbed)}" if disturbed else ""))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.keep:
        results = with_kept(out / "results.json", results)
    payload = {**{r.key: r.ratio for r in results},  # top level: the ratios only
               "run": {"mode": mode, "wall_s": round(wall, 1), "machine": info, "errors": errors,
                       "generation_s": ctx.generation_s, "other_work_by_measurement": load},
               "details": {r.key: r.to_json() for r in results}}
    (out / "results.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    (out / "RESULTS.md").write_text(results_md(mode, info, results, errors, wall, ctx, load) + "\n")
    print(f"wrote {out / 'RESULTS.md'} and {out / 'results.json'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
