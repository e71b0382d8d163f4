"""The label arrays of one static clip, from its table rows (see :mod:`engine.datasets.emos_static`).

A clip's Basic-7 label comes from the first row that gives one, analysis tables first (the full Dawid-Skene
results, with each annotator's own label), then the simplified tables (``high`` files first, ``low`` last). Its
tier follows the EmoS paper: **high** when the annotators are unanimous or the confidence is at least 0.9,
**medium** from 0.8 to 0.9, **low** below 0.8.

>>> primary_tier(0.95, False), primary_tier(0.85, False), primary_tier(0.5, True), primary_tier(0.79, False)
('high', 'medium', 'high', 'low')
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..labels import BASIC7, GOEMOTIONS28, basic7_index
from .emos_static_tables import (BASIC7_COLUMNS, EMPTY_BASIC7, GOEMOTION_COLUMNS, NO_BASIC7_ROW, NOT_BASIC7, TEXT_COLUMN,
                                 TIER_COLUMN, TIER_HIGH, TIER_MEDIUM, TIERS, Row, as_float, as_text)

# ------------------------------------------------------------------------------------------------ one clip
@dataclass
class Clip:
    """Everything the tables say about one clip, before it becomes an :class:`~engine.dataset.Item`."""

    lang: str
    fields: dict                                        # template fields: dialogue/utterance or video_id/clip_id
    analysis: list[Row] = field(default_factory=list)   # annotated_with_ds rows
    basic7: list[Row] = field(default_factory=list)     # simplified Basic-7 rows
    goemo: list[Row] = field(default_factory=list)
    clip_strings: list[str] = field(default_factory=list)  # CH-SIMS ids as the tables spell them
    warnings: list[str] = field(default_factory=list)


def primary_tier(confidence: float, unanimous: bool) -> str:
    """The paper's tier of a Basic-7 label: ``high``, ``medium``, ``low``; ``""`` when nothing is known."""
    if unanimous:
        return "high"
    if math.isnan(confidence):
        return ""
    return "high" if confidence >= TIER_HIGH else "medium" if confidence >= TIER_MEDIUM else "low"


@dataclass
class Basic7:
    """What the tables say about a clip's Basic-7 label."""

    index: int = -1
    confidence: float = math.nan
    raw: str = ""
    tier: str = ""                # the paper's tier
    table_tier: str = ""          # the tier a simplified CH-SIMS table states
    annotators: list[tuple[str, str]] = field(default_factory=list)  # (annotator, label)
    why_unknown: str = ""


def _same(a: float, b: float, atol: float = 1e-6) -> bool:
    """Equal as the tables mean them: within ``atol``, or both unknown (NaN)."""
    return abs(a - b) <= atol or (math.isnan(a) and math.isnan(b))


def basic7_of(clip: Clip, warnings: list[str]) -> Basic7:
    """The clip's Basic-7 label, confidence, tier and annotators; later rows that disagree are warnings."""
    label_col, conf_col = BASIC7_COLUMNS[clip.lang]
    out = Basic7()
    rows = [*clip.analysis, *clip.basic7]
    if not rows:
        warnings.append("no Basic-7 row in the label tables: primary is unknown (-1)")
        out.why_unknown = NO_BASIC7_ROW
        return out
    values = []
    for row in rows:
        conf = as_float(row.get(conf_col))
        if conf is None:
            warnings.append(f"{row.table} row {row.n}: {conf_col} {row.get(conf_col)!r} is not a number")
            conf = math.nan
        values.append((as_text(row.get(label_col)), conf, row))
    out.raw, out.confidence, first = values[0]
    for raw, conf, row in values[1:]:
        if raw != out.raw or not _same(conf, out.confidence):
            warnings.append(f"{row.table} row {row.n} labels this clip {raw!r} ({conf:.3f}); kept {out.raw!r} "
                            f"({out.confidence:.3f}) from {first.table} row {first.n}")
    out.index = basic7_index(out.raw)
    if not out.raw:
        warnings.append(f"{first.table} row {first.n}: empty {label_col}: primary is unknown (-1)")
        out.why_unknown = EMPTY_BASIC7
    elif out.index < 0:
        warnings.append(f"{first.table} row {first.n}: {label_col} {out.raw!r} is not a Basic-7 label: "
                        "primary is unknown (-1)")
        out.why_unknown = NOT_BASIC7
    source = next((r for r in clip.analysis if r.annotators), None)
    if source is not None:
        out.annotators = [(name, as_text(source.get(col))) for name, col in source.annotators]
        odd = [label for _, label in out.annotators if label and basic7_index(label) < 0]
        if odd:
            warnings.append(f"{source.table} row {source.n}: annotator label {', '.join(map(repr, odd))} is not "
                            "a Basic-7 label (kept as given)")
    stated = [(as_text(r.get(TIER_COLUMN)).lower(), r) for r in clip.basic7]
    stated = [(t, r) for t, r in stated if t]
    tier_row = None
    if stated:
        out.table_tier, tier_row = stated[0]
    if out.index < 0:
        return out
    labels = [label for _, label in out.annotators]
    if any(labels):
        unanimous = len(labels) >= 2 and all(labels) and len(set(labels)) == 1
        out.tier = primary_tier(out.confidence, unanimous)
        if out.table_tier and out.table_tier != out.tier:
            warnings.append(f"{tier_row.table} row {tier_row.n} says tier {out.table_tier!r}; confidence "
                            f"{out.confidence:.3f}{' (unanimous)' if unanimous else ''} makes it {out.tier!r}")
    else:  # unanimity unknown here: the simplified table's tier knows it, else the confidence alone decides
        out.tier = out.table_tier if out.table_tier in TIERS else primary_tier(out.confidence, False)
    return out


def goemotion_labels(clip: Clip, warnings: list[str]) -> tuple[np.ndarray, float]:
    """The 28 vote fractions in :data:`GOEMOTIONS28` order and the ``unsure`` one, from the first row."""
    if not clip.goemo:
        warnings.append("no GoEmotions row in the label tables: goemotions are unknown (NaN)")
        return np.full(len(GOEMOTIONS28), np.nan, np.float32), math.nan
    vectors = []
    for row in clip.goemo:
        vec = [as_float(v) for v in row.many(GOEMOTION_COLUMNS)]
        bad = [col for col, v in zip(GOEMOTION_COLUMNS, vec) if v is None]
        if bad:
            warnings.append(f"{row.table} row {row.n}: not a number in {', '.join(bad)} (NaN)")
        vectors.append(([math.nan if v is None else v for v in vec], row))
    first, first_row = vectors[0]
    for vec, row in vectors[1:]:
        if not all(_same(a, b) for a, b in zip(vec, first)):
            warnings.append(f"{row.table} row {row.n} gives other GoEmotions values; kept those of "
                            f"{first_row.table} row {first_row.n}")
    return np.array(first[:-1], np.float32), first[-1]


def clip_text(clip: Clip, warnings: list[str]) -> str:
    """The utterance as the first row that has one gives it; another text in a later row is a warning."""
    col = TEXT_COLUMN[clip.lang]
    texts = [(as_text(r.get(col)), r) for r in (*clip.analysis, *clip.basic7, *clip.goemo)]
    texts = [(t, r) for t, r in texts if t]
    if not texts:
        warnings.append("no utterance text in the label tables")
        return ""
    text, first = texts[0]
    for t, r in texts[1:]:
        if t != text:
            warnings.append(f"{r.table} row {r.n} gives another text ({t!r}); kept that of {first.table} "
                            f"row {first.n}")
            break
    return text


def label_arrays(clip: Clip, n_annotators: int, warnings: list[str]) -> tuple[dict[str, np.ndarray], dict]:
    """The label arrays of a clip (each over its one segment) and their descriptions (see :mod:`engine.datasets.emos_static`)."""
    b7 = basic7_of(clip, warnings)
    goemo, unsure = goemotion_labels(clip, warnings)
    width = max(n_annotators, len(b7.annotators))
    pad = [("", "")] * (width - len(b7.annotators))
    names, votes = zip(*(b7.annotators + pad)) if width else ((), ())
    labels = {"primary": np.array([b7.index], np.int8),
              "primary_confidence": np.array([b7.confidence], np.float32),
              "primary_raw": np.array([b7.raw], dtype=object),
              "primary_tier": np.array([b7.tier], dtype=object),
              "annotator_labels": np.array([list(votes)], dtype=object).reshape(1, width),
              "annotator_ids": np.array([list(names)], dtype=object).reshape(1, width),
              "goemotions": goemo[None, :].astype(np.float32),
              "goemotions_unsure": np.array([unsure], np.float32)}
    attrs = {"primary": {"names": list(BASIC7), "unknown": -1},
             "primary_confidence": {"range": [0, 1], "unknown": "NaN"},
             "primary_tier": {"values": list(TIERS), "unknown": "",
                              "rule": f"high: annotators unanimous or confidence >= {TIER_HIGH}; medium: "
                                      f"{TIER_MEDIUM} <= confidence < {TIER_HIGH}; low: confidence < {TIER_MEDIUM}"},
             "annotator_labels": {"about": "the Basic-7 label each annotator chose, as the analysis table gives it",
                                  "unknown": ""},
             "annotator_ids": {"about": "who gave each column of annotator_labels (the table's name for them)",
                               "unknown": ""},
             "goemotions": {"names": list(GOEMOTIONS28), "unknown": "NaN",
                            "about": "fraction of annotators who chose each emotion (multi-label: a row can sum "
                                     "above 1)"},
             "goemotions_unsure": {"about": "fraction of annotators who were unsure", "unknown": "NaN"}}
    if b7.why_unknown:
        attrs["primary"]["why_unknown"] = b7.why_unknown
    if clip.lang == "zh":
        labels["confidence_tier"] = np.array([b7.table_tier or b7.tier], dtype=object)
        attrs["confidence_tier"] = {"values": list(TIERS), "unknown": "",
                                    "about": "the tier the simplified table states, else primary_tier"}
    return labels, attrs
