"""Datasets by name: each finds the items of a checkout (media, segments, labels, language).

A dataset is a class registered with :func:`register_dataset`; ``--split NAME`` picks it. The built-in ones are
the EmoS streaming films (``stream``), the EmoS static clips (``static``) and the generated demo (``demo``).
Adding one is one module that defines and registers a class; a dataset outside this package is named
``package.module:name`` (the module is imported, and registers itself).

>>> {"demo", "static", "stream"} <= set(dataset_names())
True
"""
from __future__ import annotations

from pathlib import Path

from ..records import Item
from ..registry import Registry

_REGISTRY = Registry("dataset", {"stream": "engine.datasets.emos_stream", "static": "engine.datasets.emos_static",
                                 "demo": "engine.datasets.demo"})


class Dataset:
    """What the pipeline needs to know of a dataset; it never asks which one it is running."""

    name = ""
    clip_level = False      # items are short clips: the store adds one mean vector per modality and item
    shard_items = 1         # items packed per store shard (a setting may override it)
    items_per_task = 1      # items whose audio a worker decodes ahead (run.items_per_task)
    cores_per_worker = 2    # CPU cores of each actor when there is no GPU and run.workers is 0 (one actor per 2)

    def discover(self, root: Path, config: dict) -> list[Item]:  # pragma: no cover - abstract
        """Every item under ``root``, each with its labels or its error (never an exception for one item)."""
        raise NotImplementedError

    def default_root(self) -> Path | None:
        """Where to look without ``--root`` (None: ``--root`` is required)."""
        return None

    def summarize(self, items: list[Item]) -> dict | None:
        """An extra section of the run report (counts by language, reasons), or None."""
        return None


def register_dataset(cls: type) -> type:
    """Class decorator: make a dataset available to ``--split`` under ``cls.name``."""
    return _REGISTRY.register(cls)


def get_dataset(name: str) -> Dataset:
    """A dataset by name (``stream``, ``static``, ``demo`` or ``package.module:name``)."""
    return _REGISTRY.get(name)()


def dataset_names() -> list[str]:
    return _REGISTRY.names()


def discover(name: str, root: str | Path, config: dict | None = None) -> list[Item]:
    """All items of dataset ``name`` under ``root`` (a shortcut for scripts and tests).

    >>> discover("stream", "/nonexistent")                                   # doctest: +SKIP
    Traceback (most recent call last):
    FileNotFoundError: /nonexistent/datasets/streaming-finalsplit does not exist: ...
    """
    return get_dataset(name).discover(Path(root), config or {})
