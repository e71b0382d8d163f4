"""Run configuration: ``configs/extract.yaml``, optionally merged with a user file, loaded safely and checked whole.

Every mistake is one line naming the file, the dotted key and what is allowed; all of them are reported at once,
before anything starts (the schema is in :mod:`engine.config_schema`)::

    my.yaml: decode.short_sid: unknown key (allowed: backend, device, short_side, upscale, chunk_frames, audio_chunk_s, threads)
    my.yaml: run.workers: 'two' is not an integer >= 0
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Mapping, Sequence

import yaml
from pydantic import ValidationError

import extractors as registry
from extractors.base import MODALITIES, ExtractorSpec

from .config_schema import FIXED_SPEC_FIELDS, allowed_keys, describe, run_config_model, type_at, union_loc

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULTS = CONFIG_DIR / "extract.yaml"


class ConfigError(ValueError):
    """Mistakes in a run configuration or on the command line: ``lines`` holds one line per mistake."""

    def __init__(self, lines: Sequence[str]):
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe loading that refuses a key given twice in one mapping (YAML would keep the last one silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict:
    first: dict = {}
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            key = (key_node.tag, key_node.value)
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key_node.value!r} is given twice (first on line {first[key] + 1})",
                    key_node.start_mark)
            first[key] = key_node.start_mark.line
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: str | Path) -> dict:
    """A YAML file that must hold a mapping (an empty file is an empty mapping)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config ({exc.strerror or exc})"]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        raise ConfigError([f"{path}:{where} not valid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the config must be a mapping of sections (groups:, decode:, store:, run:, ...), "
                           f"not {_show(data)}"])
    return data


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "groups":
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _show(value) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _given_in(data: dict, loc: Sequence) -> bool:
    """Whether ``data`` holds the key at ``loc`` (so a mistake there is that file's)."""
    for part in loc:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _error_line(err: dict, model, where: str) -> str:
    loc = tuple(err["loc"])
    if loc and loc[-1] == "[key]":
        return f"{where}: {'.'.join(map(str, loc[:-1]))}: the key {_show(err['input'])} is not a string"
    key = ".".join(map(str, loc))
    if err["type"] in ("extra_forbidden", "invalid_key"):
        if len(loc) == 3 and loc[0] == "extractors" and loc[2] in FIXED_SPEC_FIELDS:
            return (f"{where}: {key}: cannot be overridden (it identifies the extractor; add a YAML under "
                    f"configs/extractors/ for a new one)")
        allowed = ", ".join(allowed_keys(type_at(model, loc[:-1]))) or "none"
        if len(loc) == 2 and loc[0] == "extractors":
            return f"{where}: {key}: unknown extractor (known: {allowed})"
        return f"{where}: {key}: unknown key (allowed: {allowed})"
    tp = type_at(model, loc)
    if tp is None:
        return f"{where}: {key}: {err['msg']}"
    if err["type"] == "missing":
        return f"{where}: {key}: missing ({describe(tp)})"
    return f"{where}: {key}: {_show(err['input'])} is not {describe(tp)}"


def _modality_mismatch(group: str, name: str, specs: Mapping[str, ExtractorSpec]) -> str | None:
    """Why ``group=name`` is wrong when a group named after a modality gets another modality's extractor."""
    spec = specs.get(name)
    if group not in MODALITIES or spec is None or spec.modality == group:
        return None
    fits = ", ".join(n for n, s in sorted(specs.items()) if s.modality == group)
    article = "an" if spec.modality[0] in "aeiou" else "a"
    return (f"{name} is {article} {spec.modality} extractor, but the group {group!r} takes a {group} extractor "
            f"(one of: {fits})")


def default_backends() -> list[str]:
    """The values ``decode.backend`` accepts: ``auto`` and every registered decode backend."""
    from .decode import backend_names
    return ["auto", *backend_names()]


_PLUGIN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def load_config(path: str | Path | None = None, *, backends: Sequence[str] | None = None,
                specs: Mapping[str, ExtractorSpec] | None = None) -> dict:
    """Defaults from ``configs/extract.yaml``, with ``path`` (if given) merged over them, checked against the schema;
    a plain dict with every key filled. Raises :class:`ConfigError` naming every mistake.

    A user file may also hold ``extractors: {name: {fps: 2, params: {...}}}`` to override extractor settings.
    ``groups`` in a user file replaces the default map as a whole.

    >>> load_config()["store"]["dtype"]
    'float32'
    """
    specs = registry.available() if specs is None else specs
    user = _read_yaml(path) if path is not None else {}
    merged = _merge(_read_yaml(DEFAULTS), user)
    backends = list(default_backends() if backends is None else backends)
    chosen = (merged.get("decode") or {}).get("backend") if isinstance(merged.get("decode"), dict) else None
    if isinstance(chosen, str) and _PLUGIN.match(chosen):  # package.module:name, a backend outside the engine
        backends.append(chosen)
    model = run_config_model(backends, specs)

    def where(loc: Sequence) -> str:
        given = path is not None and _given_in(user, [p for p in loc if p != "[key]"])
        return str(path) if given else str(DEFAULTS)

    lines: list[str] = []
    try:
        valid = model.model_validate(merged)
    except ValidationError as exc:
        valid = None
        seen: set[tuple] = set()
        for err in exc.errors():
            loc = union_loc(model, err["loc"])
            if loc not in seen:
                seen.add(loc)
                lines.append(_error_line({**err, "loc": loc}, model, where(loc)))
    groups = merged.get("groups")
    for group, name in (groups.items() if isinstance(groups, dict) else ()):
        why = _modality_mismatch(group, name, specs) if isinstance(name, str) else None
        if why:
            lines.append(f"{where(('groups', group))}: groups.{group}: {why}")
    if lines:
        raise ConfigError(lines)
    cfg = valid.model_dump()
    cfg["extractors"] = valid.extractors.model_dump(exclude_unset=True)  # only what the user overrides
    return cfg


def parse_extractor_list(text: str, specs: Mapping[str, ExtractorSpec]) -> dict[str, str]:
    """``--extractors`` -> ``{group: extractor}``. ``NAME`` goes to the group named after its modality (or
    after itself when that group is taken); ``GROUP=NAME`` names the group, and a group named after a modality
    takes an extractor of that modality. Raises :class:`ConfigError` naming every mistake.

    >>> from extractors import available
    >>> parse_extractor_list("frame_stats,logmel", available())
    {'visual': 'frame_stats', 'audio': 'logmel'}
    """
    groups: dict[str, str] = {}
    lines: list[str] = []
    for tok in (t.strip() for t in text.split(",")):
        if not tok:
            continue
        group, eq, name = (s.strip() for s in tok.rpartition("="))
        if eq and not group:
            lines.append(f"--extractors: {tok}: the group name is empty (GROUP=NAME)")
            continue
        if name not in specs:
            lines.append(f"--extractors: {tok}: unknown extractor {name!r} (known: {', '.join(sorted(specs))})")
            continue
        group = group or (specs[name].modality if specs[name].modality not in groups else name)
        why = _modality_mismatch(group, name, specs)
        if why:
            lines.append(f"--extractors: {tok}: {why}")
        elif group in groups:
            lines.append(f"--extractors: {tok}: the group {group!r} is given twice")
        else:
            groups[group] = name
    if not groups and not lines:
        lines.append(f"--extractors: {text!r} names no extractor (see --list-extractors)")
    if lines:
        raise ConfigError(lines)
    return groups


def check_run(config_path: str | Path | None = None, extractor_arg: str | None = None, *,
              workers: int | None = None, root: str | Path | None = None) -> dict:
    """Everything a run is given, checked before anything starts: the config (``--config`` over the defaults),
    ``--extractors``, ``--workers`` and ``--root``. Returns the config; raises :class:`ConfigError` with every mistake.
    """
    specs = registry.available()
    lines: list[str] = []
    cfg = None
    try:
        cfg = load_config(config_path, specs=specs)
    except ConfigError as exc:
        lines += exc.lines
    if extractor_arg is not None:
        try:
            parse_extractor_list(extractor_arg, specs)
        except ConfigError as exc:
            lines += exc.lines
    elif cfg is not None and not cfg["groups"]:
        lines.append(f"{config_path or DEFAULTS}: groups: no extractor selected (give groups or --extractors)")
    if workers is not None and workers < 0:
        lines.append(f"--workers: {workers} is not an integer >= 0")
    if root is not None and not Path(root).expanduser().is_dir():
        lines.append(f"--root: {root} is not a folder")
    if lines:
        raise ConfigError(lines)
    return cfg
