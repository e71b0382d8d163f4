"""Run configuration: ``configs/extract.yaml``, optionally merged with a user file, loaded safely."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "groups":
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config(path: str | Path | None = None) -> dict:
    """Defaults from ``configs/extract.yaml``, with ``path`` (if given) merged over them.

    A user file may also hold ``extractors: {name: {fps: 2, params: {...}}}`` to override extractor settings.
    ``groups`` in a user file replaces the default map as a whole.
    """
    with open(CONFIG_DIR / "extract.yaml", encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    if path is not None:
        with open(path, encoding="utf-8") as fh:
            user = yaml.safe_load(fh) or {}
        if not isinstance(user, dict):
            raise ValueError(f"{path}: the config must be a mapping")
        cfg = _merge(cfg, user)
    cfg.setdefault("extractors", {})
    return cfg


def parse_extractor_list(text: str, specs: dict) -> dict[str, str]:
    """``--extractors`` -> ``{group: extractor}``. ``NAME`` goes to the group named after its modality (or
    after itself when that group is taken); ``GROUP=NAME`` names the group.

    >>> from extractors import available
    >>> parse_extractor_list("frame_stats,logmel", available())
    {'visual': 'frame_stats', 'audio': 'logmel'}
    """
    groups: dict[str, str] = {}
    for tok in (t.strip() for t in text.split(",")):
        if not tok:
            continue
        group, _, name = tok.rpartition("=")
        if name not in specs:
            raise ValueError(f"unknown extractor {name!r}; known: {', '.join(sorted(specs))}")
        group = group or (specs[name].modality if specs[name].modality not in groups else name)
        if group in groups:
            raise ValueError(f"group {group!r} is given twice in --extractors")
        groups[group] = name
    return groups
