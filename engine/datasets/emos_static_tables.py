"""The static split's label tables as rows of cells: reading xlsx files, and the values of their cells."""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..labels import GOEMOTIONS28

PROB_PREFIX = "goemotion_prob_"
PROB_COLUMNS = tuple(PROB_PREFIX + name for name in GOEMOTIONS28)
UNSURE_COLUMN = PROB_PREFIX + "unsure"
GOEMOTION_COLUMNS = (*PROB_COLUMNS, UNSURE_COLUMN)
VOTE_PREFIX = "basic_vote_"  # MELD analysis tables: basic_vote_<annotator>

ID_COLUMNS = {"en": ("Dialogue_ID", "Utterance_ID"), "zh": ("video_id", "clip_id")}
TEXT_COLUMN = {"en": "Utterance", "zh": "text"}
# the Basic-7 label and confidence columns; the same in the simplified and the analysis tables of a language
BASIC7_COLUMNS = {"en": ("basic_corrected", "basic_corrected_conf"), "zh": ("ds_label", "ds_confidence")}
TIER_COLUMN = "confidence_tier"  # CH-SIMS simplified tables only

TIER_HIGH, TIER_MEDIUM = 0.9, 0.8
TIERS = ("high", "medium", "low")
MIN_ANNOTATORS = 3  # every EmoS clip has three annotators: annotator arrays keep that width when none are known

# why a clip has no Basic-7 label: the short reasons the run report counts
NO_BASIC7_ROW = "no Basic-7 row"
EMPTY_BASIC7 = "empty Basic-7 label"
NOT_BASIC7 = "label not in Basic-7"


# ------------------------------------------------------------------------------------------------ table reading
@dataclass
class Row:
    """One data row of a label table; :meth:`get` reads a cell by column name."""

    table: str                 # the table's path under the label folder, for warnings
    n: int                     # row number in the sheet (the header is row 1)
    values: list
    columns: dict[str, int]    # column name -> index, shared by the rows of a table
    annotators: tuple[tuple[str, str], ...] = ()  # (annotator, column) of an analysis table

    def get(self, column: str):
        """The cell of ``column``; None when the table has no such column or the row is shorter."""
        k = self.columns.get(column)
        return self.values[k] if k is not None and k < len(self.values) else None

    def many(self, columns: tuple[str, ...]) -> list:
        """The cells of ``columns``, as :meth:`get` gives each."""
        values, n, index = self.values, len(self.values), self.columns
        return [values[k] if k is not None and k < n else None for k in map(index.get, columns)]


def read_table(path: Path, required: Iterable[str], name: str | None = None) -> tuple[list[str], list[Row]]:
    """``(header, rows)`` of the first sheet of the xlsx ``path``: the named columns in sheet order and the
    non-empty rows. Raises :class:`ValueError` naming the file when it does not open or lacks a ``required``
    column."""
    from python_calamine import CalamineWorkbook  # a compiled reader: the real tables read in about a second

    try:  # zip, XML and format errors all mean the same thing to the user
        grid = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python(skip_empty_area=False)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable xlsx file ({type(exc).__name__}: {exc}); "
                         "replace it with the release's copy or move it out of the folder") from exc
    header, *body = grid or [[]]
    columns: dict[str, int] = {}
    for k, col in enumerate(header):
        if isinstance(col, str) and col.strip():
            columns.setdefault(col.strip(), k)  # the first of two equal headers wins
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(map(repr, missing))} in the header row "
                         f"(columns: {', '.join(columns) or 'none'})")
    rows = []
    for n, values in enumerate(body, start=2):
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
            continue
        rows.append(Row(name or path.name, n, values, columns))
    return list(columns), rows


def annotator_columns(lang: str, header: list[str]) -> tuple[tuple[str, str], ...]:
    """``(annotator, column)`` pairs of an analysis table: MELD's ``basic_vote_<annotator>`` columns; for CH-SIMS,
    the columns between ``text`` and ``ds_label``, named after their annotator (``a1``..``a3``, ``cp``, ``ljx``)."""
    votes = tuple((c[len(VOTE_PREFIX):], c) for c in header if c.startswith(VOTE_PREFIX))
    if votes or lang == "en":
        return votes
    text, label = TEXT_COLUMN[lang], BASIC7_COLUMNS[lang][0]
    i, j = header.index(text), header.index(label)
    return tuple((c, c) for c in header[i + 1:j])


# ------------------------------------------------------------------------------------------------ cell values
def as_int(v) -> int | None:
    """An integer id cell (``3``, ``3.0``, ``"3"``) as int, else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().isdigit():
        return int(v.strip())
    return None


def as_float(v) -> float | None:
    """A numeric cell as float; NaN for an empty cell; None for one that is not a number."""
    if type(v) is float:  # the common case, first: tables hold tens of thousands of numeric cells
        return v
    if v is None or (isinstance(v, str) and not v.strip()):
        return math.nan
    if isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def as_text(v) -> str:
    """A text cell stripped; an empty cell is ``""``."""
    return "" if v is None else str(v).strip()
