"""The one ``zarr.json`` parser: node attributes and arrays, read without zarr-python in the loop.

zarr-python costs ~1 ms per ``__getitem__``; the store is written so that it need not be in the read path:
numeric arrays are uncompressed little-endian bytes in a single chunk, so the chunk file *is* the array and is
memory-mapped. Every check that a damaged store would fail is made here, once, with the file named: a missing
chunk file (zarr would silently return the fill value) or one of the wrong size raises :class:`StoreError`.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ..errors import StoreError


def read_meta(node: Path) -> dict | None:
    """The parsed ``zarr.json`` of a node; None when the node does not exist. A broken file raises StoreError."""
    path = node / "zarr.json"
    try:
        with open(path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: damaged metadata ({exc}); re-run the extraction to rewrite it") from None
    if not isinstance(meta, dict) or meta.get("zarr_format") != 3:
        raise StoreError(f"{path}: not Zarr v3 metadata")
    return meta


def read_attrs(node: Path) -> dict | None:
    """A node's attributes (None when it does not exist)."""
    meta = read_meta(node)
    return None if meta is None else meta.get("attributes", {})


def _chunk_file(arr_path: Path, meta: dict) -> Path:
    enc = meta.get("chunk_key_encoding", {})
    sep = enc.get("configuration", {}).get("separator", "/")
    zeros = ["0"] * len(meta["shape"])
    if enc.get("name", "default") == "default":
        return arr_path / sep.join(["c", *zeros]) if zeros else arr_path / "c"
    return arr_path / sep.join(zeros or ["0"])


def plain_layout(meta: dict) -> tuple[np.dtype, tuple, tuple] | None:
    """``(dtype, shape, chunk)`` when the array is one uncompressed little-endian chunk, else None."""
    codecs = meta.get("codecs", [])
    chunk = tuple(meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape", ()))
    shape = tuple(meta["shape"])
    plain = (len(codecs) == 1 and codecs[0].get("name") == "bytes"
             and codecs[0].get("configuration", {}).get("endian", "little") == "little")
    single = len(chunk) == len(shape) and all(c >= max(1, s) for c, s in zip(chunk, shape))
    try:
        dtype = np.dtype(meta["data_type"])
    except TypeError:
        return None
    return (dtype, shape, chunk) if plain and single else None


def chunk_path(arr_path: Path) -> Path | None:
    """The chunk file of a single-chunk array (None for an empty or non-plain array)."""
    meta = read_meta(arr_path)
    if meta is None or plain_layout(meta) is None or math.prod(meta["shape"]) == 0:
        return None
    return _chunk_file(arr_path, meta)


def load_array(arr_path: Path, mmap: bool = True, meta: dict | None = None) -> np.ndarray:
    """An array of the store: memory-mapped when its layout allows, else read through zarr (strings).

    ``meta``: the array's metadata when the caller has it (a shard's consolidated metadata), else its
    ``zarr.json`` is read. Raises :class:`StoreError` naming the file when the array is missing or its chunk is
    missing or truncated.
    """
    if meta is None:
        meta = read_meta(arr_path)
    if meta is None:
        raise StoreError(f"{arr_path}: array is missing (no zarr.json)")
    layout = plain_layout(meta)
    if layout is not None:
        dtype, shape, chunk = layout
        if math.prod(shape) == 0:
            return np.zeros(shape, dtype)
        f = _chunk_file(arr_path, meta)
        want = math.prod(chunk) * dtype.itemsize
        try:
            size = os.stat(f).st_size
        except FileNotFoundError:
            raise StoreError(f"{f}: chunk file is missing ({shape} {dtype} expected); the store is damaged, "
                             "re-run the extraction to recompute it") from None
        if size != want:
            raise StoreError(f"{f}: chunk file has {size} bytes, {want} expected; the store is damaged, "
                             "re-run the extraction to recompute it")
        if not mmap:
            arr = np.fromfile(f, dtype=dtype).reshape(chunk)
        else:
            arr = np.memmap(str(f), dtype=dtype, mode="r", shape=chunk)
        return arr if chunk == shape else arr[tuple(slice(0, s) for s in shape)]
    codecs = meta.get("codecs", [])
    if [c.get("name") for c in codecs] == ["vlen-utf8"] and meta.get("data_type") == "string":
        return _load_strings(arr_path, meta)
    import zarr
    try:
        return zarr.open_array(str(arr_path), mode="r")[...]
    except Exception as exc:
        raise StoreError(f"{arr_path}: array does not read ({type(exc).__name__}: {exc})") from None


def _load_strings(arr_path: Path, meta: dict) -> np.ndarray:
    """A single-chunk string array in the ``vlen-utf8`` encoding (a count, then length-prefixed UTF-8 strings),
    read without importing zarr-python (its import alone costs ~0.5 s)."""
    shape = tuple(meta["shape"])
    n = math.prod(shape)
    chunk = tuple(meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape", ()))
    if n == 0:
        return np.zeros(shape, dtype=object)
    if chunk != shape:
        import zarr
        return zarr.open_array(str(arr_path), mode="r")[...]
    f = _chunk_file(arr_path, meta)
    try:
        buf = f.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{f}: chunk file is missing; the store is damaged, re-run the extraction") from None
    try:
        count = int.from_bytes(buf[:4], "little")
        if count != n:
            raise ValueError(f"{count} strings, {n} expected")
        out, at = [], 4
        for _ in range(n):
            size = int.from_bytes(buf[at:at + 4], "little")
            at += 4
            if at + size > len(buf):
                raise ValueError("truncated")
            out.append(buf[at:at + size].decode("utf-8"))
            at += size
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{f}: damaged string chunk ({exc}); re-run the extraction") from None
    return np.array(out, dtype=object).reshape(shape)


def check_array(arr_path: Path) -> str | None:
    """Why an array is damaged (cheap: metadata parses, chunk exists with the right size), or None if whole."""
    try:
        meta = read_meta(arr_path)
        if meta is None:
            return f"{arr_path}: array is missing"
        layout = plain_layout(meta)
        if layout is None:  # strings: a missing chunk of a non-empty array
            if math.prod(meta["shape"]) and not any(p.is_file() for p in (arr_path / "c").rglob("*")):
                return f"{arr_path}/c: chunk file is missing"
            return None
        dtype, shape, chunk = layout
        if math.prod(shape) == 0:
            return None
        f = _chunk_file(arr_path, meta)
        want = math.prod(chunk) * dtype.itemsize
        if not f.is_file():
            return f"{f}: chunk file is missing"
        if f.stat().st_size != want:
            return f"{f}: chunk file has {f.stat().st_size} bytes, {want} expected"
    except StoreError as exc:
        return str(exc)
    return None


# ------------------------------------------------------------------------------------------------ writing
_ZARR_DTYPES = {"f4": "float32", "f8": "float64", "f2": "float16", "i1": "int8", "i2": "int16", "i4": "int32",
                "i8": "int64", "u1": "uint8", "u2": "uint16", "u4": "uint32", "u8": "uint64", "b1": "bool"}


def _plain(value):
    """Attributes as strict JSON: NaN and infinities become null (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value


def _write_json(path: Path, meta: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "zarr.json").write_text(json.dumps(_plain(meta), ensure_ascii=False, allow_nan=False, indent=1),
                                    encoding="utf-8")


def write_group(path: Path, attrs: dict | None = None, consolidated: dict | None = None) -> None:
    """A Zarr v3 group node (its ``zarr.json``), with the metadata of every node below it inline when
    ``consolidated`` is given (see :func:`consolidate`)."""
    meta = {"zarr_format": 3, "node_type": "group", "attributes": attrs or {}}
    if consolidated is not None:
        meta["consolidated_metadata"] = {"kind": "inline", "must_understand": False, "metadata": consolidated}
    _write_json(path, meta)


def consolidate(path: Path) -> dict:
    """The metadata of every node below the group at ``path``, keyed by relative path (``"visual"``,
    ``"visual/features"``): zarr-python's inline consolidated metadata, which it and xarray read instead of each
    node's file, and so does this package's reader (one file per shard instead of ~25)."""
    out = {}
    for dirpath, _dirs, files in os.walk(path):
        if "zarr.json" in files and dirpath != str(path):
            rel = os.path.relpath(dirpath, path).replace(os.sep, "/")
            with open(os.path.join(dirpath, "zarr.json"), encoding="utf-8") as fh:
                out[rel] = json.load(fh)
    return dict(sorted(out.items()))


def write_array(path: Path, data: np.ndarray, dims: tuple[str, ...], attrs: dict | None = None) -> None:
    """A Zarr v3 array in one chunk: numbers as raw little-endian bytes (``bytes`` codec, memory-mappable),
    strings in the ``vlen-utf8`` encoding. Written directly: zarr-python's per-array cost (~10 ms, an asyncio
    round trip each) dominated a shard's writing, and the format is this simple."""
    data = np.asarray(data)
    chunk = [max(1, n) for n in data.shape]
    meta = {"zarr_format": 3, "node_type": "array", "shape": list(data.shape),
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunk}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "attributes": attrs or {}, "dimension_names": list(dims), "storage_transformers": []}
    if data.dtype == object or data.dtype.kind == "U":
        meta.update(data_type="string", fill_value="", codecs=[{"name": "vlen-utf8", "configuration": {}}])
        flat = [("" if x is None else str(x)).encode("utf-8") for x in data.ravel()]
        raw = len(flat).to_bytes(4, "little") + b"".join(len(b).to_bytes(4, "little") + b for b in flat)
    else:
        le = data.dtype.newbyteorder("<") if data.dtype.byteorder == ">" else data.dtype
        key = f"{le.kind}{le.itemsize}"
        if key not in _ZARR_DTYPES:
            raise ValueError(f"{path}: no Zarr v3 data type for {data.dtype}")
        meta.update(data_type=_ZARR_DTYPES[key], fill_value=False if le.kind == "b" else 0,
                    codecs=[{"name": "bytes", "configuration": {"endian": "little"}}])
        raw = np.ascontiguousarray(data, dtype=le).tobytes()  # the chunk is the whole array
    _write_json(path, meta)
    if data.size == 0:  # an empty array has no chunk to read
        return
    f = _chunk_file(path, meta)
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(raw)
