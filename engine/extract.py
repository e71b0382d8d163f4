"""``python -m engine.extract``: find the items of a dataset, extract their features, write the store.

Examples::

    python -m engine.extract --split stream                       # the embedded demo -> ./emos_features
    python -m engine.extract --split stream --root ~/EmoS --out /data/emos_features
    python -m engine.extract --split static --root ~/EmoS --extractors frame_stats,egemaps,e5_small
    python -m engine.extract --split stream --root ~/EmoS --address auto   # join a running Ray cluster
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import extractors as registry

from .config import ConfigError, check_run, parse_extractor_list
from .datasets import dataset_names, get_dataset
from .decode import select_backend
from .pipeline.launch import Launch, TaskFeed, may_need_work
from .pipeline.plan import plan_shards
from .records import Group, RunPlan
from .report import dry_run, list_extractors, print_summary, write_report
from .store import FeatureStore

log = logging.getLogger("engine.extract")
DEFAULT_OUT = "emos_features"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.extract", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", help=f"the dataset: {', '.join(dataset_names())}, or package.module:name")
    p.add_argument("--root", help="a checkout with its media (default: the embedded demo corpus, generated "
                                  "once on first use)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder; the store is <out>/<split>.zarr "
                                                       f"(default: ./{DEFAULT_OUT})")
    p.add_argument("--config", help="YAML merged over configs/extract.yaml")
    p.add_argument("--extractors", help="comma-separated NAME or GROUP=NAME, replacing the config's groups "
                                        "(see --list-extractors)")
    p.add_argument("--workers", type=int, help="extraction actors (default: one per GPU, else one per 2 CPUs, "
                   "one per CPU for the static clips)")
    p.add_argument("--address", help="Ray cluster to join ('auto' or host:port); default: start a local Ray")
    p.add_argument("--force", action="store_true", help="recompute even what the cache says is up to date")
    p.add_argument("--dry-run", action="store_true", help="list items, media, durations and problems; decode "
                                                          "and write nothing")
    p.add_argument("--list-extractors", action="store_true", help="show the available extractors and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no worker logs (batch jobs)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def cuda_usable() -> bool:
    """Whether CUDA works on this machine. Where Linux shows no NVIDIA device (``/dev/nvidia0``..., or WSL's
    ``/dev/dxg``) the answer is no without importing torch, 3 s of the driver's start on a CPU machine."""
    if sys.platform.startswith("linux") and not (glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/dxg")):
        return False
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def resolve_decode(cfg: dict) -> tuple[dict, str]:
    """The decode settings with the backend resolved (``auto`` decided here, on the driver), and the precision
    of the encoders. Both enter the cache key: a store never mixes backends or precisions silently."""
    decode = dict(cfg["decode"])
    device = decode.get("device", "auto")
    cuda = cuda_usable()
    if device == "auto":
        device = "gpu" if cuda else "cpu"
    decode["backend"] = select_backend(decode.get("backend", "auto"), device)
    decode["device"] = "cpu" if decode["backend"] == "pyav" else device  # PyAV decodes on the CPU only
    precision = "fp16" if cuda and cfg.get("run", {}).get("half_precision", True) else "fp32"
    return decode, precision


FALLBACK_SHORT_SIDE = 256  # decode.short_side: auto, for a visual extractor that states no frame_short_side


def resolve_short_side(setting, specs) -> int:
    """``decode.short_side`` made concrete: a number stays; ``auto`` is the largest short side the run's visual
    extractors ask for (``frame_short_side`` in their YAML; 256 for one that asks none), so frames are scaled in the
    decoder's threads to what the encoders need and no further (EfficientNet-Lite0 alone: 224, no second resize).
    It enters the visual groups' cache key as the number: ``auto`` and that number share a store."""
    if setting != "auto":
        return int(setting)
    sides = [s.needed_short_side() or FALLBACK_SHORT_SIDE for s in specs if s.modality == "visual"]
    return max(sides, default=FALLBACK_SHORT_SIDE)


def make_groups(cfg: dict, extractor_arg: str | None, decode: dict | None = None,
                precision: str = "fp32") -> list[Group]:
    known = registry.available()
    mapping = parse_extractor_list(extractor_arg, known) if extractor_arg else dict(cfg["groups"])
    decode = decode or {"backend": "pyav", "device": "cpu"}
    overrides = cfg.get("extractors") or {}
    specs = {group: registry.get_spec(name, overrides.get(name)) for group, name in mapping.items()}
    short_side = resolve_short_side(cfg["decode"]["short_side"], specs.values())
    groups = []
    for group, spec in specs.items():
        settings = {"dtype": cfg["store"]["dtype"], "weights": registry.weights_identity(spec)}
        if spec.modality == "visual":
            settings["short_side"] = short_side
            settings["upscale"] = bool(cfg["decode"].get("upscale", False))
            settings["decode"] = f"{decode['backend']}:{decode['device']}"  # pixels differ between backends
        if spec.device != "cpu":
            settings["precision"] = precision
        groups.append(Group(group, spec, settings))
    if not groups:
        raise ValueError("no extractor selected")
    return groups


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
    try:  # every mistake in the config and on the command line, before discovery and before Ray starts
        cfg = check_run(args.config, args.extractors, workers=args.workers, root=args.root)
        dataset = get_dataset(args.split)
        decode, precision = resolve_decode(cfg)
        groups = make_groups(cfg, args.extractors, decode, precision)
        decode["short_side"] = resolve_short_side(cfg["decode"]["short_side"], [g.spec for g in groups])
    except ConfigError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    root = Path(args.root).expanduser() if args.root else dataset.default_root()
    if root is None:
        print(f"error: --split {args.split} needs --root (a checkout with its media)", file=sys.stderr)
        return 2
    if not args.root:
        log.info("no --root: using the embedded demo corpus at %s", root)
    items = dataset.discover(root, cfg)
    if args.dry_run:
        return dry_run(items, dataset.name)

    out = Path(args.out).expanduser()
    store = FeatureStore(out, dataset.name)  # <out>/<name>.zarr
    try:
        store.create()
        store.sweep()
        damaged = store.retire_damaged()
        index = store.index()
    except OSError as exc:
        print(f"error: cannot write the store in {out} ({exc.strerror or exc}): choose another --out",
              file=sys.stderr)
        return 2
    report_path = out / f"{dataset.name}.report.json"
    report_path.unlink(missing_ok=True)  # a report that could not be rewritten must not look current
    for line in damaged:
        log.warning("damaged shard taken out of the store, its items are recomputed: %s", line)
    shard_items = int((cfg["store"].get("shard_items") or {}).get(dataset.name, dataset.shard_items))
    plan = RunPlan(out=str(out), split=dataset.name, groups=groups, decode=decode, store_dtype=cfg["store"]["dtype"],
                   force=args.force, duration_tolerance_s=float(cfg.get("stream", {}).get("duration_tolerance_s", 1.0)),
                   half_precision=precision == "fp16", pooled=dataset.clip_level,
                   model_threads=int(cfg["run"].get("model_threads", 0)),
                   batch_items=int((cfg["run"].get("items_per_task") or {}).get(dataset.name, dataset.items_per_task)))
    timings = None
    todo = may_need_work(items, index, args.force)
    if todo:  # Ray and the actors start while the media are hashed; each shard runs as soon as it is planned
        feed = TaskFeed()

        def plan_all():
            try:
                planned = plan_shards(items, groups, index, shard_items, args.force, ready=feed.put)
            except BaseException as exc:  # the run stops at once, and this exception is raised from it
                feed.close(exc)
                raise
            feed.close()
            return planned
        with ThreadPoolExecutor(1, thread_name_prefix="plan") as bg:
            planned = bg.submit(plan_all)
            try:
                launch = Launch(plan, cfg.get("run", {}), args.address, args.workers, args.quiet,
                                max_actors=-(-len(todo) // max(1, shard_items)), t0=t_start,
                                cores_per_worker=dataset.cores_per_worker)
                ran = launch.run([], feed=feed, expected=len(todo))
            except BaseException:
                feed.cancel()  # the planner stops at its next task instead of hashing every file
                raise
            _, results = planned.result()
        results += ran
        timings = launch.timings
    else:
        tasks, results = plan_shards(items, groups, index, shard_items, args.force)
        if tasks:
            launch = Launch(plan, cfg.get("run", {}), args.address, args.workers, args.quiet,
                            max_actors=len(tasks), t0=t_start, cores_per_worker=dataset.cores_per_worker)
            results += launch.run(tasks)
            timings = launch.timings
    wall = time.perf_counter() - t_start
    extra = {"root": str(root), "store": str(store.path), "groups": {g.name: g.spec.name for g in groups},
             "decode": decode, "precision": precision, "damaged_shards": damaged,
             "dataset_summary": dataset.summarize(items)}
    try:
        report = write_report(report_path, dataset.name, results, wall, extra, timings)
    except OSError as exc:
        print(f"error: the run report could not be written to {report_path} ({exc.strerror or exc}); the "
              "store itself is consistent (every shard is published whole)", file=sys.stderr)
        return 2
    print_summary(report, results, groups, store.path, report_path, quiet=args.quiet)
    return 1 if report["counts"].get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
