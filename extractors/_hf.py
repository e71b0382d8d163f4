"""Plumbing shared by the Hugging Face backends (``hf_vision``, ``hf_audio``, ``hf_text``).

One place for: loading strictly offline with a one-line error, the model's identity (id or path plus a digest of
its weights files), the check of the YAML's ``dim`` against the loaded model, and fp16 placement.

Models are always loaded with ``local_files_only=True``: a model is either a local folder (``config.json`` plus
weights) or a repository id already in the Hugging Face cache. Nothing is ever downloaded.
"""
from __future__ import annotations

import glob
import hashlib
import logging
import os
import re
from typing import Any, Callable

from .base import ExtractorSpec, file_digest

log = logging.getLogger(__name__)
_REPO_ID = re.compile(r"^[A-Za-z0-9_][\w.-]*(/[\w.-]+)?$")


class OfflineModelError(RuntimeError):
    """A model that cannot be loaded offline. Its message is one line that says what to do."""


def model_name(spec: ExtractorSpec) -> str:
    """``params.model`` of a spec (a repository id or a local folder), with ``~`` expanded."""
    model = spec.params.get("model")
    if not model:
        raise ValueError(f"{spec.name}: params.model is not set; give a model id or a local folder "
                         f"in configs/extractors/{spec.name}.yaml or an --config override")
    model = str(model)
    return os.path.expanduser(model) if model.startswith("~") else model


def _reason(exc: BaseException) -> str:
    line = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    return line if len(line) <= 200 else line[:197] + "..."


def offline_error(owner: str, model: str, exc: BaseException | None = None, what: str = "model"
                  ) -> OfflineModelError:
    """The one-line error for a model (or its tokenizer, ...) that cannot be loaded offline."""
    if os.path.isdir(model):
        return OfflineModelError(
            f"{owner}: cannot load the {what} from folder {model!r} ({_reason(exc) if exc else 'unknown error'}); "
            f"the folder needs config.json and the weights as written by save_pretrained")
    if not _REPO_ID.match(model):  # a path, not a repository id
        return OfflineModelError(
            f"{owner}: model folder {model!r} does not exist; set params.model to a folder written by "
            f"save_pretrained or to a model id in the Hugging Face cache")
    return OfflineModelError(
        f"{owner}: {what} {model!r} is not available offline (no such folder and not in the Hugging Face cache); "
        f"download it on a machine with access (hf download {model} --local-dir DIR) and set params.model to DIR")


def load_offline(owner: str, loader: Callable[..., Any], model: str, what: str = "model", **kwargs) -> Any:
    """``loader(model, local_files_only=True, **kwargs)``, re-raising a missing or broken model as one line.

    >>> def from_pretrained(model, local_files_only):
    ...     raise OSError(f"{model} does not appear to have a file named config.json")
    >>> load_offline("demo", from_pretrained, "no-org/no-model")
    Traceback (most recent call last):
    ...
    extractors._hf.OfflineModelError: demo: model 'no-org/no-model' is not available offline (...
    """
    try:
        return loader(model, local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError) as exc:  # transformers reports a missing file as OSError/ValueError
        raise offline_error(owner, model, exc, what) from None


def load_model(owner: str, cls, model: str, unused: tuple[str, ...] = (), **kwargs):
    """``cls.from_pretrained`` offline; returns ``(model, missing)`` with the names of the parameters the
    checkpoint lacks (transformers initialises those at random), after warning about those that the extractor
    uses (names starting with one of ``unused`` are not used)."""
    net, info = load_offline(owner, cls.from_pretrained, model, output_loading_info=True, **kwargs)
    missing = sorted(k for k in (info.get("missing_keys") or ()) if not k.startswith(unused))
    if missing:
        log.warning("%s: %s lacks %d weight(s), left randomly initialised: %s%s", owner, model, len(missing),
                    ", ".join(missing[:4]), " ..." if len(missing) > 4 else "")
    return net, missing


def try_load_offline(loader: Callable[..., Any], model: str, **kwargs) -> Any | None:
    """Like :func:`load_offline` for optional files (e.g. a preprocessor config): None when absent."""
    try:
        return loader(model, local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def model_folder(model: str) -> str | None:
    """The folder the weights were loaded from: ``model`` itself, or its snapshot in the Hugging Face cache."""
    if os.path.isdir(model):
        return model
    from huggingface_hub import try_to_load_from_cache
    found = try_to_load_from_cache(model, "config.json")
    return os.path.dirname(found) if isinstance(found, str) else None


def weights_digest(model: str) -> str:
    """blake2b over the weights files transformers loads (``*.safetensors``, else ``*.bin``), by name."""
    folder = model_folder(model)
    if folder is None:
        return "?"
    files = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
    if not files:
        files = sorted(f for f in glob.glob(os.path.join(folder, "*.bin")) if "training_args" not in f)
    if not files:
        return "?"
    h = hashlib.blake2b(digest_size=16)
    for f in files:
        h.update(os.path.basename(f).encode())
        h.update(file_digest(f).encode())
    return h.hexdigest()


def check_dim(spec: ExtractorSpec, model: str, got: int, what: str = "features") -> None:
    """The YAML's ``dim`` must equal what the model emits: ``dim`` is read before any model is loaded (listing,
    empty items, store layout), so a model with another width must come with its own ``dim``."""
    if int(got) != int(spec.dim):
        raise RuntimeError(
            f"{spec.name}: model {model!r} gives {got}-d {what} but the config says dim: {spec.dim}; set dim: {got} "
            f"in configs/extractors/{spec.name}.yaml, or override it in a --config file "
            f"(extractors: {{{spec.name}: {{dim: {got}, params: {{model: ...}}}}}})")


def place(net, device: str, precision: str):
    """Evaluation mode on ``device``; fp16 when asked for and the device is a GPU (fp16 on a CPU is slow)."""
    net = net.eval().to(device)
    if precision == "fp16" and str(device).startswith("cuda"):
        net = net.half()
    return net


def model_dtype(net):
    return next(net.parameters()).dtype
