"""``warm_vs_cold``: a second run with nothing changed vs the cold run, same corpus, same output folder.

Both are ``engine.extract.main`` in a fresh process (wall time of ``main()``); the warm run should find every
item complete and up to date from its shards' ``zarr.json`` attributes and the recorded media fingerprints, and
never start Ray (checked: the report of a run that started Ray carries its ``Timings``; whether Ray was even
imported is reported too).
"""
from __future__ import annotations

from .common import Context, Ratio


def measure(ctx: Context) -> list[Ratio]:
    cold, warm = ctx.engine_run("1x"), ctx.engine_run("1x", warm=True)
    cached = warm["counts"].get("cached", 0)
    notes = [f"warm run: {cached} of {warm['items']} items cached, Ray started: {warm['started_ray']} (imported: "
             f"{warm['ray_imported']}); cold run: {cold['counts']}, Ray started: {cold['started_ray']}",
             f"whole processes (interpreter start and imports included): warm {warm['process_s']:.2f} s, cold "
             f"{cold['process_s']:.2f} s, ratio {warm['process_s'] / cold['process_s']:.3f}"]
    if warm["started_ray"] or warm["ray_imported"] or cached != warm["items"]:
        notes.append("UNEXPECTED: the warm run recomputed something or started Ray")
    return [Ratio("warm_vs_cold",
                  f"warm re-run (nothing changed) vs the cold run of the demo-like 1x corpus "
                  f"(extractors {ctx.mode.extractors})",
                  "warm main() s", warm["wall_s"], "cold main() s", cold["wall_s"], "wall s",
                  warm["wall_s"] / cold["wall_s"], "< 0.05", notes, {"cold": cold, "warm": warm},
                  {"a": warm["other_share"], "b": cold["other_share"]})]
