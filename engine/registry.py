"""Things chosen by name (datasets, decode backends): one small registry type for both.

A built-in entry is imported on first use; an entry outside the engine is named ``package.module:name``, and its
module registers it when imported (in every Ray worker too, since workers import it by the same name).
"""
from __future__ import annotations

import importlib


class Registry:
    """Classes registered by their ``name`` attribute."""

    def __init__(self, kind: str, builtin: dict[str, str]):
        self.kind, self.builtin, self.entries = kind, dict(builtin), {}

    def register(self, cls: type) -> type:
        """Class decorator: make ``cls`` available under ``cls.name``."""
        self.entries[cls.name] = cls
        return cls

    def get(self, name: str) -> type:
        """The class registered as ``name`` or ``package.module:name``; ValueError naming the known ones."""
        module, _, short = name.rpartition(":")
        if module:
            importlib.import_module(module)
            name = short
        elif name not in self.entries and name in self.builtin:
            importlib.import_module(self.builtin[name])
        if name not in self.entries:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self.entries[name]

    def names(self) -> list[str]:
        return sorted({*self.builtin, *self.entries})
