"""``python -m engine.extract``: find the items of a split, extract their features, write the store.

Examples::

    python -m engine.extract --split stream                       # the embedded demo -> ./emos_features
    python -m engine.extract --split stream --root ~/EmoS --out /data/emos_features
    python -m engine.extract --split static --root ~/EmoS --extractors frame_stats,egemaps,e5_small
    python -m engine.extract --split stream --root ~/EmoS --address auto   # join a running Ray cluster
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import extractors as registry

from .cache import Group, plan_item
from .config import load_config, parse_extractor_list
from .dataset import discover
from .report import summary_table, write_report
from .store import FeatureStore
from .worker import ItemResult, RunPlan

log = logging.getLogger("engine.extract")
DEFAULT_OUT = "emos_features"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.extract", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=("stream", "static"), help="streaming films or static clips")
    p.add_argument("--root", help="an EmoS checkout with its media (default: the embedded demo corpus, generated "
                                  "once on first use)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder; the store is <out>/<split>.zarr "
                                                       f"(default: ./{DEFAULT_OUT})")
    p.add_argument("--config", help="YAML merged over configs/extract.yaml")
    p.add_argument("--extractors", help="comma-separated NAME or GROUP=NAME, replacing the config's groups "
                                        "(see --list-extractors)")
    p.add_argument("--workers", type=int, help="extraction actors (default: one per GPU, else one per 2 CPUs)")
    p.add_argument("--address", help="Ray cluster to join ('auto' or host:port); default: start a local Ray")
    p.add_argument("--force", action="store_true", help="recompute even what the cache says is up to date")
    p.add_argument("--dry-run", action="store_true", help="list items, media, durations and problems; decode "
                                                          "and write nothing")
    p.add_argument("--list-extractors", action="store_true", help="show the available extractors and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no worker logs (batch jobs)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def list_extractors() -> str:
    specs = registry.available()
    rows = [(s.name, s.modality, str(s.dim), f"{s.fps} fps" if s.fps else (f"{s.sample_rate} Hz" if s.sample_rate
            else "per segment"), s.device, s.description) for s in specs.values()]
    head = ("name", "modality", "dim", "input rate", "device", "description")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in [head, *rows])


def make_groups(cfg: dict, extractor_arg: str | None) -> list[Group]:
    specs = registry.available()
    mapping = parse_extractor_list(extractor_arg, specs) if extractor_arg else dict(cfg["groups"])
    groups = []
    for group, name in mapping.items():
        spec = registry.get_spec(name, (cfg.get("extractors") or {}).get(name))
        settings = {"dtype": cfg["store"]["dtype"], "weights": registry.weights_identity(spec)}
        if spec.modality == "visual":
            settings["short_side"] = cfg["decode"]["short_side"]
        groups.append(Group(group, spec, settings))
    if not groups:
        raise ValueError("no extractor selected")
    return groups


def dry_run(items, split: str) -> int:
    from .decode import probe
    from .errors import ItemError
    bad = 0
    print(f"{'item':40}  {'media s':>8}  {'meta s':>8}  {'segs':>5}  problem")
    for it in items:
        dur, problem = None, it.error.line() if it.error else ""
        if not problem and it.media:
            try:
                dur = probe(it.media).duration_s
            except ItemError as exc:
                exc.item = it.id
                problem = exc.line()
        bad += bool(problem)
        print(f"{it.id[:40]:40}  {dur if dur is not None else float('nan'):8.2f}  "
              f"{it.duration_s if it.duration_s is not None else float('nan'):8.2f}  {len(it.segments):5d}  "
              f"{problem or (it.source + (f'  ({len(it.warnings)} warning(s))' if it.warnings else ''))}")
    print(f"{len(items)} {split} item(s), {bad} with problems")
    return 1 if bad else 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.list_extractors:
        print(list_extractors())
        return 0
    if not args.split:
        build_parser().error("--split is required")
    t_start = time.perf_counter()
    cfg = load_config(args.config)
    groups = make_groups(cfg, args.extractors)
    if args.root:
        root = Path(args.root).expanduser()
    else:
        from .demo import ensure_demo
        root = ensure_demo()
        log.info("no --root: using the embedded demo corpus at %s", root)
    items = discover(args.split, root, cfg)
    if args.dry_run:
        return dry_run(items, args.split)

    out = Path(args.out).expanduser()
    store = FeatureStore(out, args.split)
    store.create()
    plan = RunPlan(out=str(out), split=args.split, groups=groups, decode=dict(cfg["decode"]),
                   store_dtype=cfg["store"]["dtype"], force=args.force,
                   duration_tolerance_s=float(cfg.get("stream", {}).get("duration_tolerance_s", 1.0)),
                   half_precision=bool(cfg.get("run", {}).get("half_precision", True)))
    results: list[ItemResult] = []
    todo = []
    for it in items:  # failed discovery and fully cached items never reach a worker
        if it.error is not None:
            results.append(ItemResult(id=it.id, status="failed", source=it.source, error=it.error.line(),
                                      warnings=it.warnings))
            continue
        try:
            old = store.item_attrs(it.id)
            p = plan_item(it, groups, old, args.force)
        except OSError as exc:
            results.append(ItemResult(id=it.id, status="failed", source=it.source,
                                      error=f"{it.id}: cannot read media ({exc}) [{it.media}]"))
            continue
        if p.rewrite:
            todo.append(it)
        else:
            results.append(ItemResult(id=it.id, status="cached", source=it.source, reused=p.reuse,
                                      media_s=float(old.get("duration_s") or 0.0), warnings=it.warnings))
    started_ray = False
    if todo:
        from .runner import init_ray, run_items
        started_ray = init_ray(args.address, quiet=args.quiet)
        run = cfg.get("run", {})
        bar = None
        if not args.quiet:
            from tqdm import tqdm
            bar = tqdm(total=len(todo), unit="item", desc=f"extract {args.split}", file=sys.stderr)
        done_media = [0.0]
        t_run = time.perf_counter()

        def on_result(r: ItemResult):
            done_media[0] += r.media_s
            if r.status == "failed":
                log.error("%s", r.error)
            if bar is not None:
                rate = done_media[0] / max(1e-9, time.perf_counter() - t_run)
                bar.set_postfix_str(f"{done_media[0]:.0f} media s, {rate:.2f} media s/s")
                bar.update(1)
        try:
            results += run_items(todo, plan, workers=args.workers or int(run.get("workers", 0)),
                                 max_restarts=int(run.get("max_restarts", 4)),
                                 max_task_retries=int(run.get("max_task_retries", 2)),
                                 in_flight_per_worker=int(run.get("in_flight_per_worker", 2)),
                                 items_per_task=int((run.get("items_per_task") or {}).get(args.split, 1)),
                                 on_result=on_result)
        finally:
            if bar is not None:
                bar.close()
            if started_ray:
                import ray
                ray.shutdown()
    wall = time.perf_counter() - t_start
    report_path = out / f"{args.split}.report.json"
    report = write_report(report_path, args.split, results, wall,
                          {"root": str(root), "store": str(store.path),
                           "groups": {g.name: g.spec.name for g in groups}})
    table = summary_table(results, failed_only=args.quiet)  # --quiet still names every failure
    if table:
        print(table)
    c = report["counts"]
    media = report["media_s"]
    print(f"\n{len(results)} item(s): {c.get('ok', 0)} written, {c.get('cached', 0)} cached, "
          f"{c.get('failed', 0)} failed | modalities: "
          + ", ".join(f"{g.name}={g.spec.name}" for g in groups)
          + f" | media {media:.1f}s in {wall:.1f}s wall ({media / max(wall, 1e-9):.2f} media s per s)"
          + f"\nstore: {store.path}\nreport: {report_path}")
    return 1 if c.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
