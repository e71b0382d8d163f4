"""Errors that name the item and the file, so a report line says what to do."""
from __future__ import annotations


class ItemError(Exception):
    """An item that cannot be (fully) extracted. Fails that item alone, never the run."""

    def __init__(self, message: str, item: str | None = None, file: str | None = None, reason: str = ""):
        super().__init__(message)
        self.message, self.item, self.file = message, item, file
        self.reason = reason  # a short cause that reports count ("clip not found"); "" for one of its own

    def line(self) -> str:
        where = f" [{self.file}]" if self.file else ""
        return f"{self.item or '?'}: {self.message}{where}"


class MediaError(ItemError):
    """Media that does not decode: missing, empty, truncated, not a video."""


class MetadataError(ItemError):
    """JSON or table metadata that cannot be used: malformed, impossible timestamps."""


class StoreError(Exception):
    """A store that is damaged or not a feature store: the message names the file."""
