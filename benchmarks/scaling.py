"""``scaling_4x``: engine throughput on a 4x corpus vs the 1x corpus, and peak memory of both runs.

The 4x corpus holds four copies of every 1x film (media hard-linked), so each media second costs the same and
only the corpus size differs. Each run is ``engine.extract.main`` in a fresh process (wall time of ``main()``,
Ray start-up included in both).

Memory, measured from ``/proc`` while the run goes (:class:`benchmarks.common.ProcessTreeMemory`, every 0.2 s):
the peak RSS (``VmHWM``) of the extraction actor process(es) (Ray workers titled ``ray::ExtractionActor``), the
driver's own peak (its ``VmHWM``), and the largest sum of current RSS over every process the run
started (driver excluded: gcs_server, raylet, Ray's agents, idle and actor workers).
"""
from __future__ import annotations

from .common import Context, Ratio, fmt


def measure(ctx: Context) -> list[Ratio]:
    one, four = ctx.engine_run("1x"), ctx.engine_run("4x")
    t1, t4 = one["media_s"] / one["wall_s"], four["media_s"] / four["wall_s"]
    m1, m4 = one["memory"], four["memory"]
    notes = [f"1x: {one['media_s']:.1f} media s in {one['wall_s']:.2f} s; 4x: {four['media_s']:.1f} media s in "
             f"{four['wall_s']:.2f} s (Ray start-up {one['ray_start_s']:.2f} s and {four['ray_start_s']:.2f} s)"]
    for name, r in (("1x", one), ("4x", four)):
        m = r["memory"]
        notes.append(f"{name} peak RSS: actor {fmt(m['actor_peak_rss_mib'], '.0f')} MiB, of it anonymous at most "
                     f"{fmt(m['actor_peak_anon_mib'], '.0f')} MiB ({m['actor_processes']} actor process(es), "
                     f"niceness {m['actor_niceness']}), driver {r['peak_rss_mib']:.0f} MiB, "
                     f"largest other Ray process {m['largest_other_descendant_mib']:.0f} MiB, sum over Ray's "
                     f"processes {m['tree_peak_rss_sum_mib']:.0f} MiB ({m['descendants_seen']} processes seen)")
    out = [Ratio("scaling_4x", f"engine throughput on the 4x corpus vs the 1x corpus (extractors "
                               f"{ctx.mode.extractors})",
                 "4x media s/s", t4, "1x media s/s", t1, "media s per wall s", t4 / t1, ">= 0.9", notes,
                 {"1x": one, "4x": four}, {"a": four["other_share"], "b": one["other_share"]})]
    if m1["actor_peak_rss_mib"] and m4["actor_peak_rss_mib"]:
        out.append(Ratio("scaling_4x_peak_rss", "peak RSS of the extraction actor process, 4x corpus vs 1x "
                                                "(flat memory; target taken from the 640 s vs 60 s test)",
                         "4x actor MiB", m4["actor_peak_rss_mib"], "1x actor MiB", m1["actor_peak_rss_mib"], "MiB",
                         m4["actor_peak_rss_mib"] / m1["actor_peak_rss_mib"], "<= 1.2",
                         [f"driver: 4x {four['peak_rss_mib']:.0f} MiB vs 1x {one['peak_rss_mib']:.0f} MiB; "
                          f"sum over Ray's processes: 4x {m4['tree_peak_rss_sum_mib']:.0f} MiB vs 1x "
                          f"{m1['tree_peak_rss_sum_mib']:.0f} MiB"], {},
                         {"a": four["other_share"], "b": one["other_share"]}))
    return out
