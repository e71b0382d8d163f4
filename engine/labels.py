"""Label vocabularies, their normalisation and turning points: the one place that knows Basic-7 and GoEmotions-28.

The real annotations are not clean ("Anger" and "Anger/愤怒", "realization 💡", names outside GoEmotions):
what maps unambiguously is normalised, the raw strings are kept, and what does not map becomes a warning.
"""
from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

BASIC7 = ("Anger", "Disgust", "Fear", "Joy", "Neutral", "Sadness", "Surprise")

GOEMOTIONS28 = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity", "desire",
    "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear", "gratitude", "grief", "joy",
    "love", "nervousness", "optimism", "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral",
)

# Chinese names used by the EmoS annotations ("Anger/愤怒") and common synonyms, for labels given in Chinese only.
_BASIC7_ZH = {
    "愤怒": "Anger", "生气": "Anger", "厌恶": "Disgust", "恐惧": "Fear", "害怕": "Fear", "喜悦": "Joy", "高兴": "Joy",
    "快乐": "Joy", "自然": "Neutral", "中性": "Neutral", "平静": "Neutral", "伤心": "Sadness", "悲伤": "Sadness",
    "难过": "Sadness", "惊讶": "Surprise", "惊喜": "Surprise",
}
_BASIC7_EN = {name.lower(): name for name in BASIC7} | {
    "happiness": "Joy", "happy": "Joy", "angry": "Anger", "sad": "Sadness", "sadness": "Sadness",
    "surprised": "Surprise", "fearful": "Fear", "disgusted": "Disgust", "neutral": "Neutral",
}


@lru_cache(maxsize=4096)  # the static tables repeat a handful of labels over ~10,000 clips
def basic7_index(raw: str | None) -> int:
    """Index into :data:`BASIC7` of a primary label such as ``"Anger/愤怒"`` or ``"joy"``; -1 if it does not map.

    >>> basic7_index("Anger/愤怒"), basic7_index("Sadness"), basic7_index("伤心"), basic7_index("bored")
    (0, 5, 5, -1)
    """
    if not raw or not isinstance(raw, str):
        return -1
    names = set()
    for part in re.split(r"[/|，,]", raw):
        part = part.strip()
        if not part:
            continue
        name = _BASIC7_EN.get(part.lower()) or _BASIC7_ZH.get(part)
        if name is None:
            return -1  # any part that does not map makes the label ambiguous
        names.add(name)
    return BASIC7.index(names.pop()) if len(names) == 1 else -1


def goemotion_name(raw: str) -> str | None:
    """A GoEmotions-28 name from a decorated form (``"realization 💡"`` -> ``"realization"``), else None.

    >>> goemotion_name("Realization 💡"), goemotion_name("determination")
    ('realization', None)
    """
    if not isinstance(raw, str):
        return None
    cleaned = re.sub(r"[^a-z ]", "", raw.lower()).strip()
    return cleaned if cleaned in GOEMOTIONS28 else None


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
