"""Find the clips of the static split: MELD-Core (English) and CH-SIMS v2 (Chinese), one utterance per clip.

The clips are defined by the label tables (xlsx); the media only has to be found. Per language, the tables are
read from the first of these folders that exists, per kind (``basic7``, ``goemotion``)::

    datasets/data-final/<Lang>/<kind>/*.xlsx     the EmoS release layout (preferred)
    labels/<Lang>/<kind>/*.xlsx                  labels kept apart from the media, at the root of the checkout

``<Lang>`` is ``English`` or ``Chinese``. Every ``*.xlsx`` of a folder is read (first sheet, header on row 1;
Excel lock files ``~$*`` and hidden files are skipped). The clips of a language are the union of its Basic-7 and
GoEmotions rows; a language without any table is skipped with a warning.

Columns (others are ignored)::

    English basic7     Dialogue_ID, Utterance_ID, Utterance, basic_corrected, basic_corrected_conf
    English goemotion  Dialogue_ID, Utterance_ID, Utterance, goemotion_prob_<name> for the 28 GoEmotions
    Chinese basic7     video_id, clip_id, text, ds_label, ds_confidence [, confidence_tier, clip_id_file]
    Chinese goemotion  video_id, clip_id, text, goemotion_prob_<name> for the 28 GoEmotions
    (both goemotion)   [goemotion_prob_unsure]

Rules:

- **Media.** MELD: ``static.meld_path`` with ``{dialogue}`` and ``{utterance}``; CH-SIMS: ``static.chsims_path``
  with ``{video_id}`` and ``{clip_id}`` (both relative to the root). A clip whose file is missing is still an
  item, failed with "clip not found" and the expected path, so the run report lists it.
- **Ids.** ``dia{D}_utt{U}`` and ``{video_id}_{clip_id}``. CH-SIMS clip ids are strings whose zeros matter
  (``0005``, ``00010``, ``00008_0``), but the GoEmotions tables store them as numbers (``5``, ``10``, ``80``) and
  the Basic-7 tables drop zeros in one column or the other. So rows are matched on the number (``00008_0`` -> 80)
  and the real id comes from the CH-SIMS v2 meta table (``video_id, clip_id, text``), by the text where two clips
  share a number. The meta table is ``static.chsims_meta`` if set, else the first that exists of
  ``<base>/ch-simsv2s-meta.csv``, ``<base>/Chinese/ch-simsv2s-meta.csv``, ``<base>/Chinese/meta.csv`` for the
  two bases above. Without it (or for a row it lacks, with a warning) the id is the first of the table's own
  strings (longest first), then the number padded to 4 and to 5 digits, whose media file exists.
- **One segment.** ``[0, inf)``: the utterance spans the whole clip. The tables give no times and discovery opens
  no media (a warm run must read none); the item's ``duration_s`` attribute, set by the worker from the media,
  is the clip's length.
- **Labels** (arrays over the one segment): ``primary`` int8 Basic-7 index (-1 unknown), ``primary_confidence``
  float32 (NaN unknown), ``primary_raw``, ``goemotions`` float32 ``[1, 28]`` in :data:`GOEMOTIONS28` order (the
  fraction of annotators who chose each emotion: several can be 1, NaN where the clip has no GoEmotions row),
  ``goemotions_unsure``, and for CH-SIMS ``confidence_tier`` (``high``/``low``). A label that does not map,
  or a label missing for a clip, is a warning on the item, never a failure.
- **Duplicates.** A clip labelled in several rows keeps the first: Basic-7 files whose name says ``high`` come
  before the others and ``low`` ones last, then files by name, then rows in order. Later rows that agree are
  ignored (the CH-SIMS ``training_data_merged.xlsx`` repeats the two halves); those that disagree are a warning.
- **Malformed tables.** A table that does not open or lacks a required column raises :class:`ValueError` naming
  the file and the columns (nothing in it can be matched to a clip). A row whose id cells are unusable becomes a
  failed item named ``<table>@row<N>``; a cell that is not a number becomes NaN and a warning.

>>> clip_number("00008_0"), clip_number(10), clip_number("0005"), clip_number("abc")
(80, 10, 5, None)
"""
from __future__ import annotations

import csv
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MetadataError
from ..labels import BASIC7, GOEMOTIONS28, basic7_index
from ..records import Item, Segment, check_item_id
from . import Dataset, register_dataset

log = logging.getLogger(__name__)

LABEL_BASES = (Path("datasets") / "data-final", Path("labels"))
LANG_DIRS = {"en": "English", "zh": "Chinese"}
CORPUS = {"en": "MELD", "zh": "CH-SIMS v2"}
DEFAULT_MELD_PATH = "datasets/data-final/English/train_splits/dia{dialogue}_utt{utterance}.mp4"
DEFAULT_CHSIMS_PATH = "datasets/data-final/Chinese/Raw/{video_id}/{clip_id}.mp4"
CHSIMS_META_NAMES = ("ch-simsv2s-meta.csv", "Chinese/ch-simsv2s-meta.csv", "Chinese/meta.csv")

PROB_PREFIX = "goemotion_prob_"
PROB_COLUMNS = tuple(PROB_PREFIX + name for name in GOEMOTIONS28)
UNSURE_COLUMN = PROB_PREFIX + "unsure"

# per language: the id columns, the text column, and the Basic-7 columns (label, confidence, tier or None)
_ID_COLUMNS = {"en": ("Dialogue_ID", "Utterance_ID"), "zh": ("video_id", "clip_id")}
_TEXT_COLUMN = {"en": "Utterance", "zh": "text"}
_BASIC7_COLUMNS = {"en": ("basic_corrected", "basic_corrected_conf", None),
                   "zh": ("ds_label", "ds_confidence", "confidence_tier")}
_TEMPLATES = {"en": ("meld_path", DEFAULT_MELD_PATH), "zh": ("chsims_path", DEFAULT_CHSIMS_PATH)}


# ------------------------------------------------------------------------------------------------ table reading
@dataclass
class Row:
    """One data row of a label table, its cells by column name."""

    table: str   # file name, for warnings
    n: int       # row number in the sheet (the header is row 1)
    cells: dict


def read_xlsx(path: Path, required: tuple[str, ...]) -> list[Row]:
    """The non-empty rows of the first sheet of ``path``; raises :class:`ValueError` naming the file when it does
    not open or lacks one of the ``required`` columns."""
    import openpyxl

    try:  # zip, XML and format errors all mean the same thing to the user
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            header, *body = list(wb.worksheets[0].iter_rows(values_only=True)) or [()]
        finally:
            wb.close()
    except Exception as exc:
        raise ValueError(f"{path}: not a readable xlsx file ({type(exc).__name__}: {exc}); "
                         "replace it with the release's copy or move it out of the folder") from exc
    columns: dict[str, int] = {}
    for k, name in enumerate(header):
        if isinstance(name, str) and name.strip():
            columns.setdefault(name.strip(), k)  # the first of two equal headers wins
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(map(repr, missing))} in the header row "
                         f"(columns: {', '.join(columns) or 'none'})")
    rows = []
    for n, values in enumerate(body, start=2):
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
            continue
        rows.append(Row(path.name, n, {c: values[k] if k < len(values) else None for c, k in columns.items()}))
    return rows


def table_order(path: Path) -> tuple[int, str]:
    """Precedence of a table among its folder: ``high`` confidence files first, ``low`` last, then by name."""
    name = path.name.lower()
    return (0 if "high" in name else 2 if "low" in name else 1, path.name)


def label_tables(root: Path, lang: str, kind: str) -> list[Path]:
    """The ``*.xlsx`` of the first label folder of ``lang``/``kind`` that exists (see the module docstring)."""
    for base in LABEL_BASES:
        folder = root / base / LANG_DIRS[lang] / kind
        if folder.is_dir():
            files = [p for p in folder.glob("*.xlsx") if not p.name.startswith(("~$", "."))]
            return sorted(files, key=table_order)
    return []


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
    if v is None or (isinstance(v, str) and not v.strip()):
        return math.nan
    if isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def as_text(v) -> str:
    return "" if v is None else str(v).strip()


def clip_number(raw) -> int | None:
    """The number a CH-SIMS clip id reduces to once stored as a number (``"00008_0"`` -> 80), else None."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return as_int(raw)
    s = as_text(raw)
    return int(s.replace("_", "")) if re.fullmatch(r"\d[\d_]*", s) else None


def expand(template: str, cfg_key: str, **fields) -> str:
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"static.{cfg_key} {template!r}: cannot fill it ({type(exc).__name__}: {exc}); "
                         f"its placeholders are {', '.join('{' + f + '}' for f in fields)}") from exc


# ------------------------------------------------------------------------------------------------ clips
@dataclass
class Clip:
    """Everything the tables say about one clip, before it becomes an :class:`Item`."""

    lang: str
    fields: dict                                        # template fields: dialogue/utterance or video_id/clip_id
    basic7: list[Row] = field(default_factory=list)
    goemo: list[Row] = field(default_factory=list)
    clip_strings: list[str] = field(default_factory=list)  # CH-SIMS ids as the tables spell them (no meta)
    warnings: list[str] = field(default_factory=list)


class ChsimsIds:
    """Real CH-SIMS v2 clip ids from the meta table, looked up by ``(video_id, clip number)`` and text."""

    def __init__(self, path: Path | None):
        self.path = path
        self.by_number: dict[tuple[str, int], list[tuple[str, str]]] = {}
        if path is None:
            return
        try:
            with open(path, encoding="utf-8-sig", newline="") as fh:
                reader = csv.DictReader(fh)
                missing = [c for c in ("video_id", "clip_id", "text") if c not in (reader.fieldnames or [])]
                if missing:
                    raise ValueError(f"{path}: no column {', '.join(map(repr, missing))} "
                                     f"(columns: {', '.join(reader.fieldnames or [])})")
                for r in reader:
                    num = clip_number(r["clip_id"])
                    if num is not None:
                        self.by_number.setdefault((r["video_id"].strip(), num), []).append(
                            (r["clip_id"].strip(), as_text(r["text"])))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ValueError(f"{path}: not a readable CSV file ({exc})") from exc

    def lookup(self, video_id: str, number: int, text: str) -> tuple[str | None, str | None]:
        """``(clip_id, None)``, or ``(None, why)`` when the meta table has no single clip for this row."""
        if self.path is None:
            return None, None
        found = self.by_number.get((video_id, number), [])
        if len(found) > 1:
            found = [c for c in found if c[1] == text]
        if len(found) == 1:
            return found[0][0], None
        if not found:
            return None, f"clip number {number} of {video_id} is not in {self.path.name}"
        return None, (f"clip number {number} of {video_id} could be any of "
                      f"{', '.join(c for c, _ in found)} in {self.path.name}")


def find_chsims_meta(root: Path, cfg: dict) -> Path | None:
    if cfg.get("chsims_meta"):
        path = root / cfg["chsims_meta"]
        if not path.is_file():
            raise FileNotFoundError(f"static.chsims_meta: {path} does not exist")
        return path
    for base in LABEL_BASES:
        for name in CHSIMS_META_NAMES:
            if (root / base / name).is_file():
                return root / base / name
    return None


def row_key(lang: str, row: Row, ids: ChsimsIds | None) -> tuple[tuple | None, dict, str | None]:
    """``(key, template fields, warning)`` of a row; key None when its id cells are unusable."""
    c = row.cells
    if lang == "en":
        d, u = as_int(c.get("Dialogue_ID")), as_int(c.get("Utterance_ID"))
        if d is None or u is None:
            return None, {}, None
        return ("en", d, u), {"dialogue": d, "utterance": u}, None
    video_id, raw = as_text(c.get("video_id")), c.get("clip_id")
    number = clip_number(raw)
    if not video_id or (number is None and not as_text(raw)):
        return None, {}, None
    clip_id, why = None, None
    if ids is not None and number is not None:
        clip_id, why = ids.lookup(video_id, number, as_text(c.get(_TEXT_COLUMN["zh"])))
    if clip_id is not None:
        return ("zh", video_id, clip_id), {"video_id": video_id, "clip_id": clip_id}, None
    # no meta (or not in it): rows meet on the number; the id string is chosen once the clip's rows are known
    key = ("zh#", video_id, number if number is not None else as_text(raw))
    return key, {"video_id": video_id, "clip_id": None}, why


def chsims_strings(row: Row) -> list[str]:
    """The clip id as this row spells it (Basic-7 tables carry ``clip_id`` and ``clip_id_file`` as strings)."""
    out = []
    for col in ("clip_id", "clip_id_file"):
        v = row.cells.get(col)
        if isinstance(v, str) and v.strip():
            out.append(v.strip())
    return out


def choose_clip_id(clip: Clip, number, root: Path, template: str) -> str:
    """Without the meta table: the first candidate id whose media exists, else the first candidate."""
    cands = sorted(dict.fromkeys(clip.clip_strings), key=len, reverse=True)
    if isinstance(number, int):
        cands += [f"{number:04d}", f"{number:05d}", str(number)]
    else:
        cands.append(str(number))
    cands = list(dict.fromkeys(cands))
    for c in cands:
        if (root / expand(template, "chsims_path", video_id=clip.fields["video_id"], clip_id=c)).is_file():
            return c
    return cands[0]


# ------------------------------------------------------------------------------------------------ labels
def _same_vector(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.allclose(a, b, atol=1e-6, equal_nan=True))


def basic7_labels(clip: Clip, warnings: list[str]) -> tuple[int, float, str, str]:
    """``(index, confidence, raw label, tier)`` from the first Basic-7 row; later rows that disagree warn."""
    label_col, conf_col, tier_col = _BASIC7_COLUMNS[clip.lang]
    if not clip.basic7:
        warnings.append("no Basic-7 row in the label tables: primary is unknown (-1)")
        return -1, math.nan, "", ""
    values = []
    for row in clip.basic7:
        conf = as_float(row.cells.get(conf_col))
        if conf is None:
            warnings.append(f"{row.table} row {row.n}: {conf_col} {row.cells.get(conf_col)!r} is not a number")
            conf = math.nan
        values.append((as_text(row.cells.get(label_col)), conf,
                       as_text(row.cells.get(tier_col)) if tier_col else "", row))
    raw, conf, tier, first = values[0]
    for other_raw, other_conf, other_tier, row in values[1:]:
        if (other_raw, other_tier) != (raw, tier) or not _same_vector(np.float32(other_conf), np.float32(conf)):
            warnings.append(f"{row.table} row {row.n} labels this clip {other_raw!r} ({other_conf:.3f}); kept "
                            f"{raw!r} ({conf:.3f}) from {first.table} row {first.n}")
    index = basic7_index(raw)
    if not raw:
        warnings.append(f"{first.table} row {first.n}: empty {label_col}: primary is unknown (-1)")
    elif index < 0:
        warnings.append(f"{first.table} row {first.n}: {label_col} {raw!r} is not a Basic-7 label: "
                        "primary is unknown (-1)")
    return index, conf, raw, tier


def goemotion_labels(clip: Clip, warnings: list[str]) -> tuple[np.ndarray, float]:
    """The 28 vote fractions in :data:`GOEMOTIONS28` order and the ``unsure`` one, from the first row."""
    if not clip.goemo:
        warnings.append("no GoEmotions row in the label tables: goemotions are unknown (NaN)")
        return np.full(len(GOEMOTIONS28), np.nan, np.float32), math.nan
    vectors = []
    for row in clip.goemo:
        vec = np.full(len(GOEMOTIONS28) + 1, np.nan, np.float32)
        bad = []
        for k, col in enumerate((*PROB_COLUMNS, UNSURE_COLUMN)):
            v = as_float(row.cells.get(col))
            if v is None:
                bad.append(col)
            else:
                vec[k] = v
        if bad:
            warnings.append(f"{row.table} row {row.n}: not a number in {', '.join(bad)} (NaN)")
        vectors.append((vec, row))
    first, first_row = vectors[0]
    for vec, row in vectors[1:]:
        if not _same_vector(vec, first):
            warnings.append(f"{row.table} row {row.n} gives other GoEmotions values; kept those of "
                            f"{first_row.table} row {first_row.n}")
    return first[:-1], float(first[-1])


def clip_text(clip: Clip, warnings: list[str]) -> str:
    col = _TEXT_COLUMN[clip.lang]
    texts = [(as_text(r.cells.get(col)), r) for r in (*clip.basic7, *clip.goemo)]
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


def label_arrays(clip: Clip, warnings: list[str]) -> tuple[dict[str, np.ndarray], dict]:
    index, conf, raw, tier = basic7_labels(clip, warnings)
    goemo, unsure = goemotion_labels(clip, warnings)
    labels = {"primary": np.array([index], np.int8), "primary_confidence": np.array([conf], np.float32),
              "primary_raw": np.array([raw], dtype=object), "goemotions": goemo[None, :].astype(np.float32),
              "goemotions_unsure": np.array([unsure], np.float32)}
    attrs = {"primary": {"names": list(BASIC7), "unknown": -1},
             "primary_confidence": {"range": [0, 1], "unknown": "NaN"},
             "goemotions": {"names": list(GOEMOTIONS28), "unknown": "NaN",
                            "about": "fraction of annotators who chose each emotion (multi-label: a row can sum "
                                     "above 1)"},
             "goemotions_unsure": {"about": "fraction of annotators who were unsure", "unknown": "NaN"}}
    if clip.lang == "zh":
        labels["confidence_tier"] = np.array([tier], dtype=object)
        attrs["confidence_tier"] = {"values": ["high", "low"], "unknown": ""}
    return labels, attrs


# ------------------------------------------------------------------------------------------------ discovery
def gather(root: Path, lang: str, ids: ChsimsIds | None) -> tuple[dict[tuple, Clip], list[Item], int]:
    """Read the label tables of ``lang`` into clips; rows whose ids are unusable become failed items."""
    id_cols, text_col = _ID_COLUMNS[lang], _TEXT_COLUMN[lang]
    label_col, conf_col, _ = _BASIC7_COLUMNS[lang]
    clips: dict[tuple, Clip] = {}
    bad: list[Item] = []
    n_tables = 0
    for kind, required in (("basic7", (*id_cols, text_col, label_col, conf_col)),
                           ("goemotion", (*id_cols, text_col, *PROB_COLUMNS))):
        for path in label_tables(root, lang, kind):
            n_tables += 1
            for row in read_xlsx(path, required):
                key, fields, why = row_key(lang, row, ids)
                if key is None:
                    item = Item(id=f"{path.stem}@row{row.n}", split="static", lang=lang, media=None, source="",
                                duration_s=None)
                    cells = ", ".join(f"{c}={row.cells.get(c)!r}" for c in id_cols)
                    item.fail(f"row {row.n}: unusable clip id ({cells})", file=str(path), cls=MetadataError)
                    bad.append(item)
                    continue
                clip = clips.setdefault(key, Clip(lang, fields))
                (clip.basic7 if kind == "basic7" else clip.goemo).append(row)
                if lang == "zh":
                    clip.clip_strings += chsims_strings(row)
                if why and why not in clip.warnings:
                    clip.warnings.append(why)
    return clips, bad, n_tables


def make_item(clip: Clip, key: tuple, root: Path, template: str, cfg_key: str) -> Item:
    if clip.lang == "zh" and clip.fields["clip_id"] is None:
        clip.fields["clip_id"] = choose_clip_id(clip, key[2], root, template)
    f = clip.fields
    item_id = f"dia{f['dialogue']}_utt{f['utterance']}" if clip.lang == "en" else f"{f['video_id']}_{f['clip_id']}"
    rel = Path(expand(template, cfg_key, **f))
    path = root / rel
    try:
        source = path.relative_to(root).as_posix()
    except ValueError:  # an absolute template outside the checkout
        source = path.as_posix()
    item = Item(id=item_id, split="static", lang=clip.lang, media=None, source=source, duration_s=None,
                meta={"corpus": CORPUS[clip.lang], **f}, warnings=list(clip.warnings))
    item.segments = [Segment(0.0, math.inf, clip_text(clip, item.warnings))]
    item.labels, item.label_attrs = label_arrays(clip, item.warnings)
    why = check_item_id(item_id)
    if why:
        item.fail(f"unusable clip id {item_id!r}: {why}", file=str(path), cls=MetadataError)
    elif not path.is_file():
        item.fail(f"clip not found: expected {source} (static.{cfg_key} = {template!r}); check --root and the "
                  "template", file=str(path))
    else:
        item.media = str(path.resolve())
    return item


def discover_static(root: Path, cfg: dict) -> list[Item]:
    """All clips of the static split under the EmoS checkout ``root``: MELD first, then CH-SIMS, each by id.

    ``cfg`` is the ``static`` section of the run config (``meld_path``, ``chsims_path``, optional
    ``chsims_meta``). Every problem of a clip becomes an error or a warning on its item; only a table that cannot
    be read at all raises (see the module docstring).
    """
    root = Path(root).resolve()
    items: list[Item] = []
    found_any = False
    for lang in ("en", "zh"):
        cfg_key, default = _TEMPLATES[lang]
        template = str(cfg.get(cfg_key) or default)
        ids = ChsimsIds(find_chsims_meta(root, cfg)) if lang == "zh" else None
        clips, bad, n_tables = gather(root, lang, ids)
        if not n_tables:
            log.warning("static: no %s label tables under %s (looked in %s)", LANG_DIRS[lang], root,
                        " and ".join(f"{b / LANG_DIRS[lang]}/{{basic7,goemotion}}" for b in LABEL_BASES))
            continue
        found_any = True
        made = [make_item(clip, key, root, template, cfg_key) for key, clip in clips.items()]
        made.sort(key=lambda it: (it.meta.get("dialogue", 0), it.meta.get("utterance", 0), it.id))
        seen: dict[str, Item] = {}
        for it in made:  # two keys that end on one id (a row outside the meta table and one inside it)
            if it.id in seen:
                seen[it.id].warnings.append(f"another table row also names clip {it.id}; only the first is kept")
                continue
            seen[it.id] = it
        ok = list(seen.values())
        n_failed = sum(it.error is not None for it in ok)
        log.info("static: %d %s clips from %d tables (%d failed%s)", len(ok), CORPUS[lang], n_tables, n_failed,
                 f", ids from {ids.path.name}" if ids is not None and ids.path else "")
        items += ok + bad
    if not found_any:
        raise FileNotFoundError(
            f"no static label tables under {root}: is --root an EmoS checkout (with "
            f"{LABEL_BASES[0]}/English/basic7/*.xlsx or {LABEL_BASES[1]}/English/basic7/*.xlsx)?")
    return items


@register_dataset
class EmosStatic(Dataset):
    """The static clips of EmoS: MELD-Core (English) and CH-SIMS v2 (Chinese), one utterance per clip."""

    name = "static"
    clip_level = True
    shard_items = 1000
    items_per_task = 8

    def discover(self, root: Path, config: dict) -> list[Item]:
        return discover_static(Path(root), (config or {}).get("static", {}))
