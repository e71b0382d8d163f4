"""``peak_rss_640s_vs_60s``: peak memory of extracting one 640 s film vs one 60 s film, same settings.

Each film is processed by :class:`engine.pipeline.worker.ShardProcessor` through ``process_items`` (what an
extraction actor runs per shard task, a film being a one-item shard; no Ray) in its own fresh process; the peak
is that process's ``VmHWM``: its peak RSS, threads included (the decode prefetch thread, torch's threads); see
:func:`benchmarks.common.run_child` for why not ``ru_maxrss``. The films are cheap on purpose: 160x120 at 25 fps,
a fixed noisy picture with a moving bar, a 44.1 kHz AAC tone, demo sentences every 4 s.
"""
from __future__ import annotations

import shutil

from .common import Context, Ratio, items_of, run_child


def _peak(ctx: Context, corpus: str) -> dict:
    root = ctx.corpus(corpus)
    (item,) = items_of(root)
    out = ctx.store_dir(f"rss-{corpus}")
    shutil.rmtree(out, ignore_errors=True)
    r = run_child(["item", str(root), item.id, str(out), ctx.mode.rss_extractors])
    if r["status"] != "ok":
        raise RuntimeError(f"{item.id}: {r['error']}")
    return r


def measure(ctx: Context) -> list[Ratio]:
    short, long = _peak(ctx, "short"), _peak(ctx, "long")
    notes = [f"{r['media_s']:.0f} s film: peak RSS {r['peak_rss_mib']:.0f} MiB; with the models loaded, before "
             f"the item: RSS {r['models_loaded']['VmRSS']:.0f} MiB, of it anonymous "
             f"{r['models_loaded']['RssAnon']:.0f} MiB (the rest is mostly torch's shared libraries); the item added "
             f"{r['peak_rss_mib'] - r['models_loaded']['VmRSS']:.0f} MiB at its peak; process() "
             f"{r['wall_s']:.1f} s (" + ", ".join(f"{k} {v:.2f} s" for k, v in r["seconds"].items()) + ")"
             for r in (short, long)]
    return [Ratio("peak_rss_640s_vs_60s",
                  f"peak RSS of one fresh process running ShardProcessor on a {long['media_s']:.0f} s film vs "
                  f"a {short['media_s']:.0f} s film (160x120, 25 fps; extractors {ctx.mode.rss_extractors})",
                  "long film MiB", long["peak_rss_mib"], "short film MiB", short["peak_rss_mib"], "MiB",
                  long["peak_rss_mib"] / short["peak_rss_mib"], "<= 1.2", notes,
                  {"short": short, "long": long}, {"a": long["other_share"], "b": short["other_share"]})]
