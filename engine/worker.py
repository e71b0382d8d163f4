"""What one worker does with one item: decode, run the extractors, write the item, publish it whole.

Knows nothing of Ray (the actor in :mod:`engine.runner` wraps it) and names no model: extractors come from the
registry by name. Bad media or metadata fail the item with an :class:`ItemError` line; the item already in the
store, if any, stays as it was.
"""
from __future__ import annotations

import logging
import os
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

import extractors as registry

from . import STORE_FORMAT, __version__
from .cache import Group, plan_item
from .dataset import Item
from .decode import decode_audio, iter_frames, prefetch, probe, select_backend
from .errors import ItemError, MediaError
from .store import FeatureStore

log = logging.getLogger(__name__)


@dataclass
class RunPlan:
    """Everything a worker needs, as plain data."""

    out: str
    split: str
    groups: list[Group]
    decode: dict
    store_dtype: str = "float32"
    duration_tolerance_s: float = 1.0
    force: bool = False
    threads: int = 0
    half_precision: bool = True


@dataclass
class ItemResult:
    id: str
    status: str                      # ok | cached | failed
    source: str = ""
    media_s: float = 0.0
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    worker_pid: int = 0
    node: str = ""                   # the Ray node that ran it (set by the actor)


class ItemProcessor:
    """Holds the loaded extractors of one worker; :meth:`process` handles one item."""

    def __init__(self, plan: RunPlan):
        self.plan = plan
        self.store = FeatureStore(plan.out, plan.split)
        self._extractors: dict[str, registry.Extractor] = {}
        self.device = "cpu"
        try:
            import torch
            if plan.threads:
                torch.set_num_threads(plan.threads)
            if torch.cuda.is_available():
                self.device = "cuda"
        except ImportError:  # pragma: no cover
            pass
        self.backend = select_backend(plan.decode.get("backend", "auto"))

    def extractor(self, group: Group):
        ex = self._extractors.get(group.name)
        if ex is None:  # each model is loaded once per worker, on first use
            precision = "fp16" if (self.device == "cuda" and self.plan.half_precision) else "fp32"
            device = "cpu" if group.spec.device == "cpu" else self.device
            ex = registry.create(group.spec, device=device, precision=precision)
            ex.setup()
            self._extractors[group.name] = ex
        return ex

    # --------------------------------------------------------------------------------------------- one item
    def process(self, item: Item) -> ItemResult:
        res = ItemResult(id=item.id, status="failed", source=item.source, warnings=list(item.warnings),
                         worker_pid=os.getpid())
        if item.error is not None:
            res.error = item.error.line()
            return res
        try:
            with self.store.lock(item.id):
                self.store.recover(item.id)
                self._process_locked(item, res)
        except ItemError as exc:
            exc.item = exc.item or item.id
            exc.file = exc.file or item.media
            res.status, res.error = "failed", exc.line()
        except Exception as exc:  # a bug or an encoder failure: this item fails, the run goes on
            log.error("%s: %s", item.id, traceback.format_exc())
            res.status, res.error = "failed", f"{item.id}: {type(exc).__name__}: {exc} [{item.media}]"
        return res

    def _process_locked(self, item: Item, res: ItemResult) -> None:
        old = self.store.item_attrs(item.id)
        plan = plan_item(item, self.plan.groups, old, self.plan.force)
        if not plan.rewrite:
            res.status, res.reused = "cached", plan.reuse
            res.media_s = float(old.get("duration_s") or 0.0)
            return
        by_name = {g.name: g for g in self.plan.groups}
        info = probe(item.media)
        duration = info.duration_s
        if item.duration_s is not None and abs(duration - item.duration_s) > self.plan.duration_tolerance_s:
            raise MediaError(f"media lasts {duration:.2f}s but its metadata says {item.duration_s:.2f}s "
                             f"(tolerance {self.plan.duration_tolerance_s}s): wrong clip?", file=item.media)
        res.media_s = duration
        old_missing = (old or {}).get("missing", {})
        missing: dict[str, str] = {g: old_missing[g] for g in plan.reuse if g in old_missing}
        writer = self.store.stage(item.id, {"source": item.source, "lang": item.lang})
        try:
            todo = [by_name[n] for n in plan.compute]
            self._visual(item, info, [g for g in todo if g.modality == "visual"], writer, res, missing)
            self._audio(item, info, [g for g in todo if g.modality == "audio"], writer, res, missing)
            self._text(item, [g for g in todo if g.modality == "text"], writer, res)
            for name in plan.reuse:
                if name not in missing:
                    writer.reuse_group(name, self.store.item_path(item.id))
            self._segments_and_labels(item, writer, duration)
            present = [g.name for g in self.plan.groups if g.name not in missing]
            if item.split == "static":
                self._pool(writer, present)
            writer.publish({
                "source": item.source, "duration_s": duration, "lang": item.lang,
                "duration_meta_s": item.duration_s, "groups": present, "missing": missing,
                "fingerprints": plan.keys, "media": plan.media, "meta_fingerprint": plan.meta_fingerprint,
                "warnings": item.warnings, "split": item.split, "meta": item.meta,
                "media_info": {"width": info.width, "height": info.height, "fps": info.fps,
                               "audio_rate": info.audio_rate, "has_video": info.has_video,
                               "has_audio": info.has_audio},
                "engine_version": __version__, "store_format": STORE_FORMAT,
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            })
        except BaseException:
            writer.abort()
            raise
        res.status, res.computed, res.reused, res.missing = "ok", plan.compute, plan.reuse, missing

    # --------------------------------------------------------------------------------------------- modalities
    def _cast(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=self.plan.store_dtype)

    def _visual(self, item, info, groups, writer, res, missing):
        if not groups:
            return
        if not info.has_video:
            for g in groups:
                missing[g.name] = "no video stream"
            return
        by_fps: dict = {}
        for g in groups:
            by_fps.setdefault(g.spec.fps or 0.0, []).append(g)
        d = self.plan.decode
        for fps, gs in by_fps.items():
            exs = [self.extractor(g) for g in gs]
            for ex in exs:
                ex.begin_item()
            feats: list[list[np.ndarray]] = [[] for _ in gs]
            times = []
            spent = [0.0] * len(gs)
            t_start = time.perf_counter()
            chunks = iter_frames(item.media, fps or None, backend=self.backend, short_side=d.get("short_side", 256),
                                 chunk_frames=d.get("chunk_frames", 32), threads=d.get("threads", 0))
            for chunk in prefetch(chunks):
                times.append(chunk.t)
                for k, ex in enumerate(exs):
                    t0 = time.perf_counter()
                    feats[k].append(self._cast(ex.extract(chunk.frames)))
                    spent[k] += time.perf_counter() - t0
            decode_s = time.perf_counter() - t_start - sum(spent)
            t = np.concatenate(times) if times else np.zeros(0)
            if len(t) == 0:
                for g in gs:
                    missing[g.name] = "video stream has no decodable frame"
                continue
            for k, (g, ex) in enumerate(zip(gs, exs)):
                writer.write_modality(g.name, np.concatenate(feats[k]), t, ex.attrs())
                res.seconds[g.name] = round(spent[k] + decode_s / len(gs), 3)

    def _audio(self, item, info, groups, writer, res, missing):
        if not groups:
            return
        if not info.has_audio:
            for g in groups:
                missing[g.name] = "no audio track"
            return
        tracks = {}
        for g in groups:
            sr = int(g.spec.sample_rate or 16000)
            t0 = time.perf_counter()
            if sr not in tracks:
                tracks[sr] = decode_audio(item.media, sr, self.plan.decode.get("audio_chunk_s", 30.0))
            track = tracks[sr]
            if track is None or len(track.wave) == 0:
                missing[g.name] = "audio track has no decodable sample"
                continue
            ex = self.extractor(g)
            ex.begin_item()
            feats, t = ex.extract(track.wave, sr)
            writer.write_modality(g.name, self._cast(feats), np.asarray(t) + track.start_s, ex.attrs())
            res.seconds[g.name] = round(time.perf_counter() - t0, 3)

    def _text(self, item, groups, writer, res):
        for g in groups:
            t0 = time.perf_counter()
            ex = self.extractor(g)
            texts = [s.text for s in item.segments]
            feats = ex.extract(texts, item.lang) if texts else np.zeros((0, g.spec.dim), np.float32)
            t = np.array([s.start_s for s in item.segments], dtype=np.float64)
            order = np.argsort(t, kind="stable")
            writer.write_modality(g.name, self._cast(feats)[order], t[order], ex.attrs())
            res.seconds[g.name] = round(time.perf_counter() - t0, 3)

    def _segments_and_labels(self, item: Item, writer, duration_s: float) -> None:
        segs = item.segments
        writer.write_array("segments/start", np.array([s.start_s for s in segs], np.float64), ("segment",),
                           {"units": "s"})
        # a static clip's one segment runs "to the end" (inf in discovery, which opens no media): store the end
        ends = [duration_s if np.isinf(s.end_s) else s.end_s for s in segs]
        writer.write_array("segments/end", np.array(ends, np.float64), ("segment",), {"units": "s"})
        writer.write_array("segments/text", np.array([s.text for s in segs], dtype=object), ("segment",))
        for name, arr in item.labels.items():
            dims = ("segment", "label")[:np.ndim(arr)] if name != "turning_points" else ("turning_point",)
            writer.write_array(f"labels/{name}", arr, dims, item.label_attrs.get(name))

    def _pool(self, writer, present) -> None:
        """Static clips: one mean-pooled vector per modality beside the frame-level rows."""
        for name in present:
            arr = writer.group[f"{name}/features"][...]
            pooled = arr.astype(np.float32).mean(axis=0) if len(arr) else np.zeros(arr.shape[1], np.float32)
            writer.write_array(f"{name}/pooled", self._cast(pooled), ("feature",))
