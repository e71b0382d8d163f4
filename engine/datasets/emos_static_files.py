"""Where the static split's files are: label table folders, clip file names, and CH-SIMS v2 clip ids.

CH-SIMS clip ids are strings whose zeros matter, while the tables store numbers: the files in a clip's folder are
the truth (see :class:`ClipFiles`), ``meta.csv`` breaks ties, and two candidates are one clear error.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from .emos_static_labels import Clip, clip_text
from .emos_static_tables import Row, as_int, as_text

LABEL_BASES = (Path("datasets") / "data-final", Path("labels"))
LANG_DIRS = {"en": "English", "zh": "Chinese"}
CORPUS = {"en": "MELD", "zh": "CH-SIMS v2"}
CORPUS_DIRS = {"en": "newdataset-MELD", "zh": "ch-simsv2s"}  # under <base>/datasets/
ANALYSIS_GLOB = "*/analysis_outputs*/basic7/annotated_with_ds*.xlsx"
DEFAULT_MELD_PATH = "datasets/data-final/English/train_splits/dia{dialogue}_utt{utterance}.mp4"
DEFAULT_CHSIMS_PATH = "datasets/data-final/Chinese/Raw/{video_id}/{clip_id}.mp4"
CHSIMS_META_NAMES = ("ch-simsv2s-meta.csv", "datasets/ch-simsv2s/meta.csv", "Chinese/ch-simsv2s-meta.csv",
                     "Chinese/meta.csv")
TEMPLATES = {"en": ("meld_path", DEFAULT_MELD_PATH), "zh": ("chsims_path", DEFAULT_CHSIMS_PATH)}

# ------------------------------------------------------------------------------------------------ tables
def table_order(path: Path) -> tuple[int, str]:
    """Precedence of a table among its folder: ``high`` confidence files first, ``low`` last, then by name."""
    name = path.name.lower()
    return (0 if "high" in name else 2 if "low" in name else 1, path.as_posix())


def _visible(paths) -> list[Path]:
    return [p for p in paths if not p.name.startswith(("~$", "."))]


def label_tables(root: Path, lang: str, kind: str) -> list[tuple[Path, Path]]:
    """``(table, its label base)`` for ``kind`` ``basic7``, ``goemotion`` or ``analysis`` of ``lang``, from the
    first label base that has that folder (see the module docstring)."""
    for base in LABEL_BASES:
        if kind == "analysis":
            folder = root / base / "datasets" / CORPUS_DIRS[lang]
            files = folder.glob(ANALYSIS_GLOB)
        else:
            folder = root / base / LANG_DIRS[lang] / kind
            files = folder.glob("*.xlsx")
        if folder.is_dir():
            return [(p, root / base) for p in sorted(_visible(files), key=table_order)]
    return []


def clip_number(raw) -> int | None:
    """The number a CH-SIMS clip id reduces to once stored as a number (``"00008_0"`` -> 80), else None."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return as_int(raw)
    s = as_text(raw)
    return int(s.replace("_", "")) if re.fullmatch(r"\d[\d_]*", s) else None


def expand(template: str, cfg_key: str, **fields) -> str:
    """The template with its fields filled; :class:`ValueError` naming the config key when it cannot be."""
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"static.{cfg_key} {template!r}: cannot fill it ({type(exc).__name__}: {exc}); "
                         f"its placeholders are {', '.join('{' + f + '}' for f in fields)}") from exc


# ------------------------------------------------------------------------------------------------ CH-SIMS ids
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
    """The CH-SIMS v2 meta table: ``static.chsims_meta``, else the first of the usual places that exists."""
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


_MARK = "\x00clip_id\x00"  # stands for {clip_id} while the template is split into folder, prefix and suffix


class Folders:
    """The files of the clip folders, each folder listed once: a stat per clip made discovery slow."""

    def __init__(self):
        self._files: dict[str, dict[str, bool]] = {}  # folder -> {file name: is a symbolic link}
        self._real: dict[str, str] = {}

    def files(self, folder: str) -> dict[str, bool]:
        """The files of ``folder`` (links to files included); empty when it does not exist."""
        if folder not in self._files:
            try:
                with os.scandir(folder) as entries:
                    self._files[folder] = {e.name: e.is_symlink() for e in entries if e.is_file()}
            except OSError:  # no such folder: none of its clips is there
                self._files[folder] = {}
        return self._files[folder]

    def is_file(self, path: str) -> bool:
        folder, name = os.path.split(path)
        return name in self.files(folder)

    def real(self, path: str) -> str:
        """``path`` with symbolic links resolved, as :meth:`pathlib.Path.resolve` gives it."""
        folder, name = os.path.split(path)
        if self.files(folder).get(name):
            return os.path.realpath(path)
        if folder not in self._real:
            self._real[folder] = os.path.realpath(folder)
        return os.path.join(self._real[folder], name)


class ClipFiles:
    """The CH-SIMS clip files that exist, by video and clip number."""

    def __init__(self, root: str, template: str, folders: Folders):
        self.root, self.template, self.folders = root, template, folders
        self._index: dict[tuple[str, str, str], dict[int, list[str]]] = {}

    def path(self, video_id: str, clip_id: str) -> str:
        return os.path.normpath(os.path.join(self.root, expand(self.template, "chsims_path", video_id=video_id,
                                                                clip_id=clip_id)))

    def matching(self, video_id: str, number: int) -> list[str] | None:
        """Ids of the clip files of ``video_id`` that reduce to ``number``; None when the template puts
        ``{clip_id}`` in a folder name (then only exact ids can be tried)."""
        folder, name = os.path.split(self.path(video_id, _MARK))
        if _MARK in folder or name.count(_MARK) != 1:
            return None
        prefix, suffix = name.split(_MARK)
        key = (folder, prefix, suffix)
        if key not in self._index:
            index: dict[int, list[str]] = {}
            for name in self.folders.files(folder):
                if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix):
                    cid = name[len(prefix):len(name) - len(suffix)]
                    num = clip_number(cid)
                    if num is not None:
                        index.setdefault(num, []).append(cid)
            self._index[key] = index
        return sorted(self._index[key].get(number, []))


def chsims_strings(row: Row) -> list[str]:
    """The clip id as this row spells it (some tables keep ``clip_id`` and ``clip_id_file`` as strings)."""
    out = []
    for col in ("clip_id", "clip_id_file"):
        v = row.get(col)
        if isinstance(v, str) and v.strip():
            out.append(v.strip())
    return out


def choose_clip_id(clip: Clip, number, files: ClipFiles, meta_id: str | None) -> tuple[str, str | None]:
    """``(clip_id, error)``: the id of the one clip file whose id reduces to the clip's number (the meta table's
    id where several do), else an error naming them all; without a file, the best id for the report."""
    video_id = clip.fields["video_id"]
    spelled = sorted(dict.fromkeys(clip.clip_strings), key=len, reverse=True)
    ids = [meta_id] if meta_id else []
    ids += spelled + ([f"{number:04d}", f"{number:05d}", str(number)] if isinstance(number, int) else [str(number)])
    ids = list(dict.fromkeys(ids))
    found = files.matching(video_id, number) if isinstance(number, int) else None
    if found is None:  # no folder to list: try the ids as they are
        return next((c for c in ids if files.folders.is_file(files.path(video_id, c))), ids[0]), None
    if meta_id in found:
        return meta_id, None
    if len(found) == 1:
        return found[0], None
    if len(found) > 1:
        names = ", ".join(os.path.basename(files.path(video_id, c)) for c in found)
        fix = ("add the CH-SIMS v2 meta.csv (datasets/ch-simsv2s/meta.csv), whose text tells them apart"
               if meta_id is None else f"the meta table names it {meta_id}, which is neither: rename the right file")
        why = (f"clip number {number} of {video_id} matches {len(found)} files in "
               f"{os.path.dirname(files.path(video_id, found[0]))}: {names}; the tables cannot tell which one "
               f"is this clip ({clip_text(clip, [])!r}): {fix}")
        return ids[0], why
    return ids[0], None
