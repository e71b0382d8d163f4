"""The EmoS streaming films: one item per film of ``datasets/streaming-finalsplit/``.

Everything here is cheap and runs in the driver: JSON is parsed, labels are aligned to segments, and every problem
becomes an :class:`ItemError` on its item (never an exception that stops the run).

Layout (``datasets/streaming-finalsplit/<Film>/``)::

    <Film>.mp4 | <clip from JSON>    the full clip (see :func:`resolve_clip` for the rule)
    sentence_level_timestamps.json   lang, duration, clip, segments[{index, start, end, text}] (clip-relative s)
    <Film>.emotion.json              utterances[{timestamp_range "MM:SS-MM:SS", emotion_primary, ...}],
                                     usually wrapped in a ```json fence
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path

from ..errors import MetadataError
from ..records import Item, Segment, check_item_id
from . import Dataset, register_dataset
from .emos_labels import align_utterances, load_json

log = logging.getLogger(__name__)

STREAM_DIR = Path("datasets") / "streaming-finalsplit"
_SEGMENT_CUT = re.compile(r"^segment\d+\.mp4$", re.IGNORECASE)
# a transcription service's banner left at the start of some sentences: not speech, so never encoded
_BANNER = re.compile(r"^\s*\(Transcribed by [^)]*\)\s*", re.IGNORECASE)


def clean_text(text: str) -> tuple[str, str | None]:
    """The sentence without a transcription banner, and a warning when one was removed.

    >>> clean_text("(Transcribed by TurboScribe.ai. Go Unlimited to remove this message.) 你好。")
    ('你好。', 'removed a transcription banner from the text')
    """
    cleaned = _BANNER.sub("", text)
    return (cleaned, "removed a transcription banner from the text") if cleaned != text else (text, None)


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


def load_film(folder: Path, root: Path, split: str = "stream") -> Item:
    film = folder.name
    item = Item(id=film, split=split, lang="", media=None, source="", duration_s=None)
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
        if item.duration_s is not None and not (math.isfinite(item.duration_s) and item.duration_s > 0):
            raise ValueError
    except (TypeError, ValueError):
        item.fail(f"'duration' is not a positive number: {meta.get('duration')!r}", file=str(ts_path),
                  cls=MetadataError)
        return item
    item.meta = {k: meta[k] for k in ("film", "source_rel", "t_start_global", "t_end_global", "clip") if k in meta}
    # segments, checked: inside the clip and end > start
    for k, s in enumerate(meta["segments"]):
        try:
            seg = Segment(float(s["start"]), float(s["end"]), str(s.get("text", "")))
            if not (math.isfinite(seg.start_s) and math.isfinite(seg.end_s)):
                raise ValueError("not finite")
        except (KeyError, TypeError, ValueError) as exc:
            item.fail(f"segment {k}: missing or non-numeric start/end ({exc})", file=str(ts_path), cls=MetadataError)
            return item
        cleaned, why = clean_text(seg.text)
        if why:
            item.warnings.append(f"segment {k}: {why} (the raw text is kept in segments/text_raw)")
            seg.text, seg.raw_text = cleaned, seg.text
        if not seg.end_s > seg.start_s:
            item.fail(f"segment {k} (index {s.get('index')}): end {seg.end_s} <= start {seg.start_s}",
                      file=str(ts_path), cls=MetadataError)
            return item
        if seg.start_s < 0 or (item.duration_s is not None and seg.end_s > item.duration_s + 0.5):
            item.fail(f"segment {k} (index {s.get('index')}): [{seg.start_s}, {seg.end_s}] lies outside the clip "
                      f"[0, {item.duration_s}]", file=str(ts_path), cls=MetadataError)
            return item
        item.segments.append(seg)
    if any(b.start_s < a.start_s for a, b in zip(item.segments, item.segments[1:])):
        # one order everywhere: rows, segments, labels and turning points all follow time
        item.segments.sort(key=lambda seg: (seg.start_s, seg.end_s))
        item.warnings.append("segments are listed out of time order in sentence_level_timestamps.json: sorted by "
                             "start time")
        log.warning("%s: segments listed out of time order in %s; sorted by start time", film, ts_path)
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


def discover_stream(root: Path, split: str = "stream") -> list[Item]:
    """Every film folder under ``root``; a folder that cannot be an item (a hidden name) is a failed item, so
    that it shows in the dry run and the report instead of vanishing."""
    base = root / STREAM_DIR
    if not base.is_dir():
        raise FileNotFoundError(f"{base} does not exist: is --root an EmoS checkout (with {STREAM_DIR}/)?")
    return [load_film(d, root, split) for d in sorted(base.iterdir()) if d.is_dir()]


@register_dataset
class EmosStream(Dataset):
    """The 46 streaming monologue films of EmoS, one item per film, sentence segments with their labels."""

    name = "stream"
    clip_level = False

    def discover(self, root: Path, config: dict) -> list[Item]:
        return discover_stream(Path(root).resolve(), self.name)

    def default_root(self) -> Path:
        """No ``--root``: the embedded demo corpus (generated once), so the first command works anywhere."""
        from . import get_dataset
        return get_dataset("demo").default_root()
