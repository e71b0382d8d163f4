"""Reading EmoS annotation files: fenced JSON, ``MM:SS-MM:SS`` ranges, utterance labels aligned to segments.

The one place that turns the release's emotion files into per-segment label arrays (vocabularies live in
:mod:`engine.labels`). Shared by the streaming films and the demo.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from kernels.align import overlap

from ..labels import BASIC7, GOEMOTIONS28, basic7_index, goemotion_name, turning_points
from ..records import Segment

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
        if u1 < u0:
            warnings.append(f"utterance {k}: range {u['timestamp_range']} ends before it starts: its labels are "
                            "not used")
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
