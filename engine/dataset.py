"""Find the items of an EmoS checkout: films of the streaming split, clips of the static split.

Everything here is cheap and runs in the driver: JSON and tables are parsed, labels are aligned to segments, and
every problem becomes an :class:`ItemError` on its item (never an exception that stops the run).

Stream layout (``datasets/streaming-finalsplit/<Film>/``)::

    <Film>.mp4 | <clip from JSON>    the full clip (see :func:`resolve_clip` for the rule)
    sentence_level_timestamps.json   lang, duration, clip, segments[{index, start, end, text}] (clip-relative s)
    <Film>.emotion.json              utterances[{timestamp_range "MM:SS-MM:SS", emotion_primary, ...}],
                                     usually wrapped in a ```json fence
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kernels.align import overlap

from .errors import ItemError, MetadataError
from .labels import BASIC7, GOEMOTIONS28, basic7_index, goemotion_name

log = logging.getLogger(__name__)

STREAM_DIR = Path("datasets") / "streaming-finalsplit"
_SEGMENT_CUT = re.compile(r"^segment\d+\.mp4$", re.IGNORECASE)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


@dataclass
class Segment:
    start_s: float
    end_s: float
    text: str


@dataclass
class Item:
    """One film or clip, with everything the workers need except the media itself."""

    id: str
    split: str
    lang: str
    media: str | None                     # absolute path of the media file
    source: str                           # media path relative to the root (stored in attrs)
    duration_s: float | None              # from the metadata; checked against the media
    segments: list[Segment] = field(default_factory=list)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    label_attrs: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)          # extra item attrs (film title, global offsets, ...)
    warnings: list[str] = field(default_factory=list)
    error: ItemError | None = None
    media_fp: dict | None = None                      # set by the driver once hashed: workers need not rehash

    def meta_fingerprint(self) -> str:
        """Digest of everything but the media that ends up in the store (segments, labels, attrs)."""
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps([self.id, self.lang, self.source, self.duration_s, self.meta,
                             [(s.start_s, s.end_s, s.text) for s in self.segments], self.label_attrs],
                            sort_keys=True, ensure_ascii=False, default=str).encode())
        for k in sorted(self.labels):
            a = self.labels[k]
            h.update(k.encode())
            h.update(a.tobytes() if a.dtype.kind != "U" and a.dtype != object else "\x1f".join(map(str, a)).encode())
        return h.hexdigest()

    def fail(self, message: str, file: str | None = None, cls=ItemError):
        if self.error is None:
            self.error = cls(message, item=self.id, file=file)


def check_item_id(name: str) -> str | None:
    """Why ``name`` cannot be a store group name (it would escape the output folder), or None if it can."""
    if not name or name in (".", "..") or name.startswith(".") or name.startswith("__"):
        return "name is empty, hidden or reserved"
    if _UNSAFE.search(name):
        return "name contains a path separator or a control character"
    if len(name.encode()) > 200:
        return "name is longer than 200 bytes"
    return None


# ---------------------------------------------------------------------------------------------------- parsing
def load_json(path: Path) -> dict:
    """Parse a JSON file, also when it is wrapped in a markdown code fence (as the EmoS emotion files are)."""
    text = path.read_text(encoding="utf-8-sig")
    stripped = text.strip()
    if stripped.startswith("```"):
        m = re.match(r"^```[A-Za-z0-9_-]*\s*\n(.*?)\n?```\s*$", stripped, re.S)
        if not m:
            raise ValueError("an opening ``` fence without a closing one")
        stripped = m.group(1)
    return json.loads(stripped)


def parse_mmss_range(raw: str) -> tuple[float, float]:
    """``"01:05-01:12"`` -> ``(65.0, 72.0)``. Also accepts ``H:MM:SS`` and fractional seconds.

    >>> parse_mmss_range("00:03-00:12")
    (3.0, 12.0)
    """
    parts = re.split(r"\s*[-–~]\s*", raw.strip())
    if len(parts) != 2:
        raise ValueError(f"not a 'MM:SS-MM:SS' range: {raw!r}")

    def secs(p: str) -> float:
        fields = p.split(":")
        if not 1 <= len(fields) <= 3:
            raise ValueError(f"not a time: {p!r}")
        total = 0.0
        for f in fields:
            total = total * 60 + float(f)
        return total

    return secs(parts[0]), secs(parts[1])


def turning_points(primary: np.ndarray) -> np.ndarray:
    """Segment indices where the primary emotion changes from the previous labelled segment.

    >>> turning_points(np.array([0, 0, 3, -1, 3, 5])).tolist()
    [2, 5]
    """
    out, prev = [], None
    for i, p in enumerate(primary.tolist()):
        if p < 0:
            continue
        if prev is not None and p != prev:
            out.append(i)
        prev = p
    return np.asarray(out, dtype=np.int32)


def align_utterances(segments: list[Segment], utterances: list[dict], clip_s: float | None,
                     warnings: list[str]) -> tuple[dict[str, np.ndarray], dict]:
    """Labels per segment from the utterance with the largest time overlap (-1 where none overlaps)."""
    n = len(segments)
    primary = np.full(n, -1, np.int8)
    intensity = np.full(n, -1, np.int8)
    goemo = np.zeros((n, len(GOEMOTIONS28)), np.float32)
    primary_raw = np.array([""] * n, dtype=object)
    secondary_raw = np.array([""] * n, dtype=object)
    spans = []
    for k, u in enumerate(utterances):
        try:
            u0, u1 = parse_mmss_range(str(u["timestamp_range"]))
        except (KeyError, ValueError) as exc:
            warnings.append(f"utterance {k}: unusable timestamp_range ({exc})")
            continue
        if clip_s is not None and u1 > clip_s + 1.0:
            warnings.append(f"utterance {k}: range {u['timestamp_range']} runs past the clip end ({clip_s:.2f}s)")
        # "MM:SS" is whole seconds: an utterance's last second counts in full
        spans.append((u0, u1 + 1.0 if u1 == int(u1) else u1, u))
    unmapped_p, unmapped_s = set(), set()
    for i, s in enumerate(segments):
        best, best_ov = None, 0.0
        for u0, u1, u in spans:
            ov = overlap(s.start_s, s.end_s, u0, u1)
            if ov > best_ov:
                best, best_ov = u, ov
        if best is None:
            continue
        raw_p = str(best.get("emotion_primary", ""))
        primary_raw[i] = raw_p
        primary[i] = basic7_index(raw_p)
        if primary[i] < 0:
            unmapped_p.add(raw_p)
        secs = best.get("emotion_secondary") or []
        if isinstance(secs, str):
            secs = [secs]
        secondary_raw[i] = ";".join(map(str, secs))
        for name in secs:
            g = goemotion_name(name)
            if g is None:
                unmapped_s.add(str(name))
            else:
                goemo[i, GOEMOTIONS28.index(g)] = 1.0
        try:
            val = int(best.get("intensity", -1))
            intensity[i] = val if 1 <= val <= 5 else -1
        except (TypeError, ValueError):
            intensity[i] = -1
    if unmapped_p:
        warnings.append(f"primary labels not in Basic-7: {sorted(unmapped_p)}")
    if unmapped_s:
        warnings.append(f"secondary labels not in GoEmotions-28: {sorted(unmapped_s)}")
    labels = {"primary": primary, "goemotions": goemo, "intensity": intensity,
              "primary_raw": primary_raw, "secondary_raw": secondary_raw,
              "turning_points": turning_points(primary)}
    attrs = {"primary": {"names": list(BASIC7)}, "goemotions": {"names": list(GOEMOTIONS28)},
             "intensity": {"range": [1, 5], "unknown": -1},
             "turning_points": {"about": "segment indices where the primary emotion changes"}}
    return labels, attrs


# ---------------------------------------------------------------------------------------------- stream split
def resolve_clip(folder: Path, meta_clip: str | None) -> tuple[Path | None, str | None]:
    """The film's full clip, by this rule (first that applies):

    1. ``<Folder>.mp4`` (the release's English folder name);
    2. the JSON ``clip`` field (some keep the original title, e.g. ``黑冰.mp4``);
    3. the only ``.mp4`` in the folder that is not a per-sentence cut (``segmentNNN.mp4``).

    Several candidates and no rule to pick one is an error, never a guess. Returns ``(path, problem)``.
    """
    named = folder / f"{folder.name}.mp4"
    if named.is_file():
        return named, None
    if meta_clip:
        by_meta = folder / Path(meta_clip).name
        if by_meta.is_file():
            return by_meta, None
    others = sorted(p for p in folder.glob("*.mp4") if not _SEGMENT_CUT.match(p.name))
    if len(others) == 1:
        return others[0], None
    if not others:
        return None, f"no full clip: expected '{named.name}'" + (f" or '{meta_clip}'" if meta_clip else "")
    return None, ("ambiguous clip: neither '" + named.name + "' nor the JSON clip exists, and several mp4 "
                  f"files could be it ({', '.join(p.name for p in others)}); rename the full clip to '{named.name}'")


def load_film(folder: Path, root: Path) -> Item:
    film = folder.name
    item = Item(id=film, split="stream", lang="", media=None, source="", duration_s=None)
    why = check_item_id(film)
    if why:
        item.fail(f"unusable film folder name: {why}", file=str(folder))
        return item
    ts_path = folder / "sentence_level_timestamps.json"
    try:
        meta = load_json(ts_path)
    except FileNotFoundError:
        item.fail("sentence_level_timestamps.json is missing", file=str(ts_path), cls=MetadataError)
        return item
    except (ValueError, UnicodeDecodeError) as exc:
        item.fail(f"malformed JSON ({exc})", file=str(ts_path), cls=MetadataError)
        return item
    if not isinstance(meta, dict) or not isinstance(meta.get("segments"), list):
        item.fail("no 'segments' list", file=str(ts_path), cls=MetadataError)
        return item
    item.lang = str(meta.get("lang", ""))
    try:
        item.duration_s = float(meta["duration"]) if meta.get("duration") is not None else None
    except (TypeError, ValueError):
        item.fail(f"'duration' is not a number: {meta.get('duration')!r}", file=str(ts_path), cls=MetadataError)
        return item
    item.meta = {k: meta[k] for k in ("film", "source_rel", "t_start_global", "t_end_global", "clip") if k in meta}
    # segments, checked: inside the clip and end > start
    for k, s in enumerate(meta["segments"]):
        try:
            seg = Segment(float(s["start"]), float(s["end"]), str(s.get("text", "")))
        except (KeyError, TypeError, ValueError) as exc:
            item.fail(f"segment {k}: missing or non-numeric start/end ({exc})", file=str(ts_path), cls=MetadataError)
            return item
        if not seg.end_s > seg.start_s:
            item.fail(f"segment {k} (index {s.get('index')}): end {seg.end_s} <= start {seg.start_s}",
                      file=str(ts_path), cls=MetadataError)
            return item
        if seg.start_s < 0 or (item.duration_s is not None and seg.end_s > item.duration_s + 0.5):
            item.fail(f"segment {k} (index {s.get('index')}): [{seg.start_s}, {seg.end_s}] lies outside the clip "
                      f"[0, {item.duration_s}]", file=str(ts_path), cls=MetadataError)
            return item
        item.segments.append(seg)
    # labels
    emo_path = folder / f"{film}.emotion.json"
    utterances: list[dict] = []
    if not emo_path.is_file():
        item.warnings.append(f"no {emo_path.name}: labels are unknown (-1)")
    else:
        try:
            emo = load_json(emo_path)
            utterances = emo.get("utterances", []) if isinstance(emo, dict) else []
            if not isinstance(utterances, list):
                raise ValueError("'utterances' is not a list")
        except (ValueError, UnicodeDecodeError) as exc:
            item.fail(f"malformed JSON ({exc})", file=str(emo_path), cls=MetadataError)
            return item
    item.labels, item.label_attrs = align_utterances(item.segments, utterances, item.duration_s, item.warnings)
    # media
    clip, problem = resolve_clip(folder, meta.get("clip"))
    if problem:
        item.fail(problem, file=str(folder))
        return item
    item.media = str(clip.resolve())
    item.source = clip.relative_to(root).as_posix()
    return item


def discover_stream(root: Path) -> list[Item]:
    base = root / STREAM_DIR
    if not base.is_dir():
        raise FileNotFoundError(f"{base} does not exist: is --root an EmoS checkout (with {STREAM_DIR}/)?")
    return [load_film(d, root) for d in sorted(base.iterdir()) if d.is_dir() and not d.name.startswith(".")]


def discover(split: str, root: Path, config: dict | None = None) -> list[Item]:
    """All items of a split under an EmoS checkout ``root``, each with its labels or its error."""
    root = Path(root).resolve()
    if split == "stream":
        return discover_stream(root)
    if split == "static":
        from .static import discover_static
        return discover_static(root, (config or {}).get("static", {}))
    raise ValueError(f"unknown split {split!r} (stream or static)")
