"""Extractor registry.

An extractor is one module in this package plus one YAML in ``configs/extractors/``. The registry reads the YAMLs
(cheap, no model library imported) and imports an extractor's module only when one is created, inside a worker.

>>> from extractors import available
>>> "frame_stats" in available()
True
"""
from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path

import yaml

from .base import MODALITIES, Extractor, ExtractorSpec

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "extractors"


class UnknownExtractor(KeyError):
    pass


def _load_spec(path: Path) -> ExtractorSpec:
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: an extractor config must be a mapping")
    known = set(ExtractorSpec.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    spec = ExtractorSpec(**raw)
    if spec.modality not in MODALITIES:
        raise ValueError(f"{path}: modality must be one of {MODALITIES}, not {spec.modality!r}")
    module = spec.entry.split(":", 1)[0]
    if not module.startswith("extractors.") or ":" not in spec.entry:
        raise ValueError(f"{path}: entry must look like 'extractors.module:Class', got {spec.entry!r}")
    undeclared = set(spec.choices) - set(spec.params)
    if undeclared:
        raise ValueError(f"{path}: choices for params it does not declare: {sorted(undeclared)}")
    check_choices(spec, str(path))
    try:
        spec.needed_short_side()
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return spec


def check_choices(spec: ExtractorSpec, where: str) -> None:
    """A param outside its declared ``choices`` is a clear error naming the allowed values."""
    for name, allowed in spec.choices.items():
        value = spec.params.get(name)
        if value not in allowed:
            raise ValueError(f"{where}: extractors.{spec.name}.params.{name} must be one of "
                             f"{', '.join(map(str, allowed))}, not {value!r}")


def available(config_dir: Path | None = None) -> dict[str, ExtractorSpec]:
    """All extractor specs by name, read from their YAML files."""
    specs = {}
    for path in sorted((config_dir or CONFIG_DIR).glob("*.yaml")):
        spec = _load_spec(path)
        specs[spec.name] = spec
    return specs


def get_spec(name: str, overrides: dict | None = None) -> ExtractorSpec:
    """The spec of one extractor, with optional overrides (e.g. ``{"fps": 2, "params": {"model": "..."}}``)."""
    specs = available()
    if name not in specs:
        raise UnknownExtractor(f"unknown extractor {name!r}; known: {', '.join(sorted(specs))}")
    spec = specs[name]
    if overrides:
        merged = {k: getattr(spec, k) for k in ExtractorSpec.__dataclass_fields__}
        for k, v in overrides.items():
            if k not in merged:
                raise ValueError(f"extractor {name}: unknown setting {k!r}")
            merged[k] = {**merged[k], **v} if k == "params" and isinstance(v, dict) else v
        spec = ExtractorSpec(**merged)
        check_choices(spec, "settings")
        spec.needed_short_side()
    return _resolved(spec)


def _resolved(spec: ExtractorSpec) -> ExtractorSpec:
    """``spec`` with every ``"auto"`` param made concrete by its module's ``resolve_params(params)``, so that the cache
    key names what runs (an ``auto`` runtime that picks bf16 on one machine and not on another would otherwise mix
    outputs under one key). Only an extractor with an ``auto`` param has its module imported here."""
    if "auto" not in spec.params.values():
        return spec
    module = importlib.import_module(spec.entry.split(":", 1)[0])
    resolve = getattr(module, "resolve_params", None)
    if resolve is None:
        raise ValueError(f"extractor {spec.name}: a param is 'auto' but {module.__name__} cannot resolve it")
    return replace(spec, params=resolve(dict(spec.params)))


def weights_identity(spec: ExtractorSpec) -> dict:
    """What identifies an extractor's weights on this machine, found cheaply and without importing a model library,
    so that new weights under an unchanged name invalidate the cache:

    - ``weights_package`` (YAML): the installed version of the package that ships the weights;
    - ``params.model`` naming a local folder: name, size and mtime of its weight and config files;
    - ``params.model`` naming a Hugging Face repository: the snapshot the local cache resolves it to;
    - ``params.encoder`` naming another extractor (``face``): that extractor's identity and digest, with
      ``encoder_params``.
    """
    import importlib.metadata
    import os

    ident: dict = {}
    if spec.weights_package:
        try:
            ident["package"] = f"{spec.weights_package}=={importlib.metadata.version(spec.weights_package)}"
        except importlib.metadata.PackageNotFoundError:
            ident["package"] = f"{spec.weights_package} (not installed)"
    model = spec.params.get("model")
    if isinstance(model, str) and model:
        folder = Path(model).expanduser()
        if folder.is_dir():
            ident["files"] = sorted(
                (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()
                if p.is_file() and (p.suffix in (".safetensors", ".bin", ".pt", ".json") or p.name.endswith(".model")))
        else:
            hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
                os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
            ref = Path(hub) / f"models--{model.replace('/', '--')}" / "refs" / "main"
            ident["snapshot"] = ref.read_text().strip() if ref.is_file() else None
    encoder = spec.params.get("encoder")
    if isinstance(encoder, str) and encoder and encoder != spec.name:
        overrides = {"params": dict(spec.params.get("encoder_params") or {})}
        enc = get_spec(encoder, overrides)
        # the encoder's own settings too (its runtime, its version): they change the embedding columns
        ident["encoder"] = {**weights_identity(enc), "config_digest": enc.digest()}
    return ident


def create(spec: ExtractorSpec, device: str = "cpu", precision: str = "fp32") -> Extractor:
    """Instantiate an extractor (imports its module). Call ``setup()`` before use."""
    module_name, cls_name = spec.entry.split(":", 1)
    cls = getattr(importlib.import_module(module_name), cls_name)
    if not (isinstance(cls, type) and issubclass(cls, Extractor)):
        raise TypeError(f"{spec.entry} is not an Extractor")
    return cls(spec, device=device, precision=precision)


__all__ = ["Extractor", "ExtractorSpec", "UnknownExtractor", "available", "create", "get_spec", "weights_identity",
           "MODALITIES"]
