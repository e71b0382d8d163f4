"""Fingerprints: what a cached feature depends on, in one place.

A modality of an item is up to date when its key matches: ``blake2b(source fingerprint, extractor digest,
settings that change the output)``. Visual and audio depend on the media file; text depends on the segments.
Media files are hashed in full once; later runs reuse the recorded digest while size and mtime are unchanged
(the rule make and git use), so a warm run reads no media at all. A file whose mtime changed but whose content did
not is hashed once more and its item republished with the new size and mtime (features reused).
"""
from __future__ import annotations

import hashlib
import json
import os


def digest(*parts, size: int = 16) -> str:
    """The one digest of plain data (JSON-serialisable parts).

    >>> digest("a", 1) == digest("a", 1) != digest("a", 2)
    True
    """
    raw = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.blake2b(raw.encode(), digest_size=size).hexdigest()


def file_blake2b(path: str, size: int = 16) -> str:
    """The one file hasher: blake2b of a file's bytes (media, weights, chunk files)."""
    h = hashlib.blake2b(digest_size=size)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def media_fingerprint(path: str, known: dict | None = None) -> dict:
    """``{"size", "mtime_ns", "blake2b"}`` of a media file; reuses ``known["blake2b"]`` if size and mtime match."""
    st = os.stat(path)
    if known and known.get("size") == st.st_size and known.get("mtime_ns") == st.st_mtime_ns and known.get("blake2b"):
        return dict(known)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "blake2b": file_blake2b(path)}


def modality_key(modality: str, media_digest: str | None, text_digest: str, extractor_digest: str,
                 settings: dict) -> str:
    """The cache key of one item x modality."""
    source = text_digest if modality == "text" else media_digest
    return digest(modality, source, extractor_digest, settings)
