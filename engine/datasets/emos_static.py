"""Find the clips of the static split: MELD-Core (English) and CH-SIMS v2 (Chinese), one utterance per clip.

The clips are defined by the label tables (xlsx); the media only has to be found. Per language and kind, the
tables are read from the first of these folders that exists::

    datasets/data-final/...     the EmoS release layout (preferred)
    labels/...                  labels kept apart from the media, at the root of the checkout

and, under it, ``<Lang>/basic7/*.xlsx``, ``<Lang>/goemotion/*.xlsx`` (the simplified tables; ``<Lang>`` is
``English`` or ``Chinese``) and the analysis tables ``datasets/<corpus>/*/analysis_outputs*/basic7/
annotated_with_ds*.xlsx`` (``<corpus>`` is ``newdataset-MELD`` or ``ch-simsv2s``), which hold the full
Dawid-Skene results with the annotators' own labels. The simplified CH-SIMS Basic-7 tables hold only the high and
low confidence tiers: without the analysis tables the medium tier has no Basic-7 label. Every ``*.xlsx`` found is
read (first sheet, header on row 1; Excel lock files ``~$*`` and hidden files are skipped). The clips of a
language are the union of all its rows; a language without any table is skipped with a warning.

Columns (others are ignored)::

    English basic7     Dialogue_ID, Utterance_ID, Utterance, basic_corrected, basic_corrected_conf
    English analysis   the same, and basic_vote_<annotator> per annotator
    English goemotion  Dialogue_ID, Utterance_ID, Utterance, goemotion_prob_<name> for the 28 GoEmotions
    Chinese basic7     video_id, clip_id, text, ds_label, ds_confidence [, confidence_tier, clip_id_file]
    Chinese analysis   video_id, clip_id, text, <annotator>..., ds_label, ds_confidence (annotators: the named
                       columns between text and ds_label)
    Chinese goemotion  video_id, clip_id, text, goemotion_prob_<name> for the 28 GoEmotions
    (both goemotion)   [goemotion_prob_unsure]

Rules:

- **Media.** MELD: ``static.meld_path`` with ``{dialogue}`` and ``{utterance}``; CH-SIMS: ``static.chsims_path``
  with ``{video_id}`` and ``{clip_id}`` (both relative to the root). The template decides, not the tables'
  ``video_path`` column (it names ``newdataset-MELD/train_splits``, a folder the release does not have). A clip
  whose file is missing is still an item, failed with "clip not found" and the expected path, so the run report
  lists it.
- **CH-SIMS ids.** The release names clips ``0001.mp4``, ``00000.mp4``, ``00008_0.mp4``, ``00011_1.mp4`` or
  ``000260.mp4``, but the tables store a number (``80``, ``260``) or a string rebuilt from it (``00080``). Each
  id reduces to a number (its digits, ``_`` dropped: ``00008_0`` -> 80), and the files in the clip's folder are
  the truth: a row's number is matched to the file whose id reduces to it. Where two files match (``00001_0``
  and ``00010`` are both 10), the CH-SIMS v2 meta table (``video_id, clip_id, text``) says which one a row's text
  is; when it cannot, the clip fails with one error naming both files, never a guess. The meta table is
  ``static.chsims_meta`` if set, else the first that exists of ``<base>/ch-simsv2s-meta.csv``,
  ``<base>/datasets/ch-simsv2s/meta.csv``, ``<base>/Chinese/ch-simsv2s-meta.csv``, ``<base>/Chinese/meta.csv``
  for the two bases above. A clip without a file takes its id from the meta table, else from the tables'
  longest spelling, else the number padded to 4 digits. The item id is ``dia{D}_utt{U}`` or
  ``{video_id}_{clip_id}`` (the file's id; ``meta_clip_id`` keeps the meta table's where it differs).
- **One segment.** ``[0, inf)``: the utterance spans the whole clip. The tables give no times and discovery opens
  no media (a warm run must read none); the item's ``duration_s`` attribute, set by the worker from the media,
  is the clip's length.
- **Labels** (arrays over the one segment): ``primary`` int8 Basic-7 index (-1 unknown; its attrs say why),
  ``primary_confidence`` float32 (NaN unknown), ``primary_raw``, ``primary_tier`` (``high``/``medium``/``low``,
  see :mod:`engine.datasets.emos_static_labels`), ``annotator_labels`` and ``annotator_ids`` ``[1, 3]`` (each annotator's
  Basic-7 label and name, ``""`` where no analysis table gives them), ``goemotions`` float32 ``[1, 28]`` in
  :data:`GOEMOTIONS28` order (the fraction of annotators who chose each emotion: several can be 1, NaN where the
  clip has no GoEmotions row), ``goemotions_unsure``, and for CH-SIMS ``confidence_tier`` (the simplified
  table's tier, else ``primary_tier``). A label that does not map, or a label missing for a clip, is a warning on
  the item, never a failure. :func:`summarize` counts, per language, the clips found and labelled and why the
  others are not.
- **Duplicates.** A clip labelled in several rows keeps the first: analysis tables, then simplified ones whose
  name says ``high``, the others, and ``low`` ones last, each kind by path, rows in order. Later rows that agree
  are ignored (the CH-SIMS ``training_data_merged.xlsx`` repeats the two halves); those that disagree warn.
- **Malformed tables.** A table that does not open or lacks a required column raises :class:`ValueError` naming
  the file and the columns (nothing in it can be matched to a clip). A row whose id cells are unusable becomes a
  failed item named ``<table>@row<N>``; a cell that is not a number becomes NaN and a warning.

>>> clip_number("00008_0"), clip_number(10), clip_number("000260"), clip_number("abc")
(80, 10, 260, None)
"""
from __future__ import annotations

import logging
import math
import os
from collections import Counter
from pathlib import Path

from ..errors import ItemError, MetadataError
from ..records import Item, Segment, check_item_id
from . import Dataset, register_dataset
from .emos_static_labels import Clip, clip_text, label_arrays
from .emos_static_tables import (BASIC7_COLUMNS, ID_COLUMNS, MIN_ANNOTATORS, NO_BASIC7_ROW, PROB_COLUMNS, TEXT_COLUMN,
                                 Row, annotator_columns, as_int, as_text, read_table)
from .emos_static_files import (TEMPLATES, CORPUS, LABEL_BASES, LANG_DIRS, ChsimsIds, ClipFiles, Folders,
                                chsims_strings, choose_clip_id, clip_number, expand, find_chsims_meta, label_tables)

log = logging.getLogger(__name__)

# why a clip was not found: the short reasons the run report counts (ItemError.reason)
CLIP_NOT_FOUND = "clip not found"
SEVERAL_FILES = "several files match"
UNUSABLE_ID = "unusable clip id"


# ------------------------------------------------------------------------------------------------ discovery
def row_key(lang: str, row: Row, ids: ChsimsIds | None) -> tuple[tuple | None, dict, str | None]:
    """``(key, template fields, warning)`` of a row; key None when its id cells are unusable."""
    if lang == "en":
        d, u = as_int(row.get("Dialogue_ID")), as_int(row.get("Utterance_ID"))
        if d is None or u is None:
            return None, {}, None
        return ("en", d, u), {"dialogue": d, "utterance": u}, None
    video_id, raw, text = as_text(row.get("video_id")), row.get("clip_id"), as_text(row.get(TEXT_COLUMN["zh"]))
    number = clip_number(raw)
    if not video_id or (number is None and not as_text(raw)):
        return None, {}, None
    meta_id, why = None, None
    if ids is not None and number is not None:
        meta_id, why = ids.lookup(video_id, number, text)
    if meta_id is not None:
        return ("zh", video_id, meta_id), {"video_id": video_id, "clip_id": None, "meta_id": meta_id}, None
    # no meta row: rows meet on number and text (two clips can share a number); the id comes from the files
    key = ("zh#", video_id, number if number is not None else as_text(raw), text)
    return key, {"video_id": video_id, "clip_id": None, "meta_id": None}, why


def gather(root: Path, lang: str, ids: ChsimsIds | None) -> tuple[dict[tuple, Clip], list[Item], int, int]:
    """Read the label tables of ``lang`` into clips; rows whose ids are unusable become failed items.
    Returns the clips, those items, the number of tables and the number of annotators of the widest table."""
    id_cols, text_col = ID_COLUMNS[lang], TEXT_COLUMN[lang]
    label_col, conf_col = BASIC7_COLUMNS[lang]
    clips: dict[tuple, Clip] = {}
    bad: list[Item] = []
    n_tables, n_annotators = 0, MIN_ANNOTATORS
    for kind, required in (("analysis", (*id_cols, text_col, label_col, conf_col)),
                           ("basic7", (*id_cols, text_col, label_col, conf_col)),
                           ("goemotion", (*id_cols, text_col, *PROB_COLUMNS))):
        for path, base in label_tables(root, lang, kind):
            n_tables += 1
            name = path.relative_to(base).as_posix()
            header, rows = read_table(path, required, name)
            annotators = annotator_columns(lang, header) if kind == "analysis" else ()
            n_annotators = max(n_annotators, len(annotators))
            # analysis tables share a name across annotation rounds: their failed rows carry the round
            stem = f"{path.relative_to(base).parts[2]}.{path.stem}" if kind == "analysis" else path.stem
            for row in rows:
                row.annotators = annotators
                key, fields, why = row_key(lang, row, ids)
                if key is None:
                    item = Item(id=f"{stem}@row{row.n}", split="static", lang=lang, media=None, source="",
                                duration_s=None)
                    cells = ", ".join(f"{c}={row.get(c)!r}" for c in id_cols)
                    _fail(item, UNUSABLE_ID, f"row {row.n}: unusable clip id ({cells})", str(path), MetadataError)
                    bad.append(item)
                    continue
                clip = clips.setdefault(key, Clip(lang, fields))
                {"analysis": clip.analysis, "basic7": clip.basic7, "goemotion": clip.goemo}[kind].append(row)
                if lang == "zh":
                    clip.clip_strings += chsims_strings(row)
                if why and why not in clip.warnings:
                    clip.warnings.append(why)
    return clips, bad, n_tables, n_annotators


def _fail(item: Item, reason: str, message: str, file: str | None, cls=ItemError) -> None:
    """Fail ``item`` (unless it already failed) with ``reason`` as the error's reason, which :func:`summarize`
    counts."""
    if item.error is None:
        item.error = cls(message, item=item.id, file=file, reason=reason)


def make_item(clip: Clip, key: tuple, root: str, template: str, cfg_key: str, folders: Folders,
              files: ClipFiles | None, n_annotators: int) -> Item:
    """The item of one clip: its id, media path, segment and labels; problems are its error and warnings."""
    ambiguous = None
    f = clip.fields
    if clip.lang == "zh":
        meta_id = f.pop("meta_id")
        number = clip_number(key[2]) if key[0] == "zh" else key[2]
        f["clip_id"], ambiguous = choose_clip_id(clip, number, files, meta_id)
        extra = {"meta_clip_id": meta_id} if meta_id and meta_id != f["clip_id"] else {}
    else:
        extra = {}
    item_id = f"dia{f['dialogue']}_utt{f['utterance']}" if clip.lang == "en" else f"{f['video_id']}_{f['clip_id']}"
    path = os.path.normpath(os.path.join(root, expand(template, cfg_key, **f)))
    # relative to the root, unless the template points outside the checkout
    source = path[len(root) + 1:].replace(os.sep, "/") if path.startswith(root + os.sep) else path
    item = Item(id=item_id, split="static", lang=clip.lang, media=None, source=source, duration_s=None,
                meta={"corpus": CORPUS[clip.lang], **f, **extra}, warnings=list(clip.warnings))
    item.segments = [Segment(0.0, math.inf, clip_text(clip, item.warnings))]
    item.labels, item.label_attrs = label_arrays(clip, n_annotators, item.warnings)
    why = check_item_id(item_id)
    if why:
        _fail(item, UNUSABLE_ID, f"unusable clip id {item_id!r}: {why}", path, MetadataError)
    elif ambiguous:
        _fail(item, SEVERAL_FILES, ambiguous, os.path.dirname(path))
    elif not folders.is_file(path):
        _fail(item, CLIP_NOT_FOUND, f"{CLIP_NOT_FOUND}: expected {source} (static.{cfg_key} = {template!r}); "
              "check --root and the template", path)
    else:
        item.media = folders.real(path)
    return item


def summarize(items: list[Item]) -> dict:
    """Per language: how many static clips there are, how many were found (media) and labelled (Basic-7 known),
    how many failed, and the short reasons for those not found or not labelled.

    >>> summarize([])
    {}
    """
    out: dict[str, dict] = {}
    for it in items:
        s = out.setdefault(it.lang, {"corpus": CORPUS.get(it.lang, it.lang), "clips": 0, "found": 0,
                                     "labelled": 0, "failed": 0, "reasons": Counter()})
        s["clips"] += 1
        s["found"] += it.media is not None
        if it.error is not None:
            s["failed"] += 1
            s["reasons"][it.error.reason or type(it.error).__name__] += 1
        primary = it.labels.get("primary")
        if primary is not None and len(primary) and int(primary[0]) >= 0:
            s["labelled"] += 1
        else:
            s["reasons"][it.label_attrs.get("primary", {}).get("why_unknown", NO_BASIC7_ROW)] += 1
    return out


def discover_static(root: Path, cfg: dict) -> list[Item]:
    """All clips of the static split under the EmoS checkout ``root``: MELD first, then CH-SIMS, each by id.

    ``cfg`` is the ``static`` section of the run config (``meld_path``, ``chsims_path``, optional
    ``chsims_meta``). Every problem of a clip becomes an error or a warning on its item; only a table that cannot
    be read at all raises (see the module docstring).
    """
    root = Path(root).resolve()
    items: list[Item] = []
    found_any = False
    folders = Folders()
    for lang in ("en", "zh"):
        cfg_key, default = TEMPLATES[lang]
        template = str(cfg.get(cfg_key) or default)
        ids = ChsimsIds(find_chsims_meta(root, cfg)) if lang == "zh" else None
        files = ClipFiles(str(root), template, folders) if lang == "zh" else None
        clips, bad, n_tables, n_annotators = gather(root, lang, ids)
        if not n_tables:
            log.warning("static: no %s label tables under %s (looked in %s)", LANG_DIRS[lang], root,
                        " and ".join(f"{b / LANG_DIRS[lang]}/{{basic7,goemotion}}" for b in LABEL_BASES))
            continue
        found_any = True
        made = [make_item(clip, key, str(root), template, cfg_key, folders, files, n_annotators)
                for key, clip in clips.items()]
        made.sort(key=lambda it: (it.meta.get("dialogue", 0), it.meta.get("utterance", 0), it.id))
        seen: dict[str, Item] = {}
        for it in made:  # two keys that end on one id (a row outside the meta table and one inside it)
            if it.id in seen:
                seen[it.id].warnings.append(f"another table row also names clip {it.id}; only the first is kept")
                continue
            seen[it.id] = it
        ok = list(seen.values())
        s = summarize(ok + bad).get(lang, {})
        log.info("static: %d %s clips from %d tables: %d found, %d with a Basic-7 label, %d failed%s%s",
                 s.get("clips", 0), CORPUS[lang], n_tables, s.get("found", 0), s.get("labelled", 0),
                 s.get("failed", 0), f" ({', '.join(f'{k}: {n}' for k, n in s['reasons'].most_common())})"
                 if s.get("reasons") else "", f"; ids from {ids.path.name}" if ids is not None and ids.path else "")
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
    # a clip's work is mostly Python (container opens, a few frames, bookkeeping) and one process's threads wait for
    # each other's GIL: on 2 cores, 2,000 clips took 34-37 s in two one-core actors against 42-45 s in one of two
    cores_per_worker = 1

    def discover(self, root: Path, config: dict) -> list[Item]:
        return discover_static(Path(root), (config or {}).get("static", {}))

    def summarize(self, items: list[Item]) -> dict:
        """Per language: clips found, labelled, failed, and why the others were not (for the run report)."""
        return summarize(items)
