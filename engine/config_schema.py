"""The schema of a run configuration (``configs/extract.yaml`` merged with a user file), in pydantic.

Every section refuses unknown keys and coerces nothing: ``"2"`` is not an integer, ``1`` is not ``true``, ``float8``
is not a dtype. Two parts come from registries rather than from this file, so :func:`run_config_model` builds the
model for the ones present: the decode backends (``decode.backend``) and the extractors (``groups`` values and the
``extractors:`` overrides, whose fields are :class:`~extractors.base.ExtractorSpec`'s and whose ``params`` are the
ones the extractor's YAML declares).

>>> from extractors import available
>>> Model = run_config_model(["auto", "pyav"], available())
>>> Model.model_validate({"run": {"workers": 2}}).run.workers
2
"""
from __future__ import annotations

import dataclasses
import types
from typing import Annotated, Any, Literal, Mapping, Sequence, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from extractors.base import ExtractorSpec

Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Seconds = Annotated[float, Field(gt=0)]


class Section(BaseModel):
    """A strict mapping: unknown keys refused, no value coerced, no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Decode(Section):
    backend: str = "auto"  # narrowed to the registered backends by run_config_model
    device: Literal["auto", "cpu", "gpu"] = "auto"
    short_side: Count | Literal["auto"] = "auto"
    upscale: bool = False
    chunk_frames: Positive = 32
    audio_chunk_s: Seconds = 10.0
    threads: Count = 0


class Store(Section):
    dtype: Literal["float32", "float16"] = "float32"
    shard_items: dict[str, Positive] = Field(default_factory=lambda: {"stream": 1, "static": 1000, "demo": 1})


class Run(Section):
    workers: Count = 0
    max_task_retries: Count = 2
    max_restarts: Count = 4
    in_flight_per_worker: Positive = 1
    items_per_task: dict[str, Positive] = Field(default_factory=lambda: {"stream": 1, "static": 8})
    half_precision: bool = True
    model_threads: Count = 0


class Static(Section):
    chsims_path: str = "datasets/data-final/Chinese/Raw/{video_id}/{clip_id}.mp4"
    meld_path: str = "datasets/data-final/English/train_splits/dia{dialogue}_utt{utterance}.mp4"
    chsims_meta: str | None = None


class Stream(Section):
    duration_tolerance_s: Annotated[float, Field(ge=0)] = 1.0


# Limits of the ExtractorSpec fields a user may override; the other fields keep the dataclass's own type.
_SPEC_LIMITS: dict[str, Any] = {
    "dim": Positive,
    "fps": Annotated[float, Field(ge=0)] | None,
    "sample_rate": Positive | None,
    "device": Literal["cpu", "gpu", "any"],
    "batch_size": Positive,
    "version": Positive,
    "frame_short_side": Positive | str | None,
}
# What makes an extractor that extractor: changing these is a new extractor (a new YAML), not an override.
FIXED_SPEC_FIELDS = ("name", "modality", "choices")


def _param_type(default: Any) -> Any:
    """A parameter's type, from its value in the extractor's YAML (null: any value)."""
    if default is None:
        return Any
    return float if isinstance(default, float) else type(default)


def _override_model(spec: ExtractorSpec) -> type[Section]:
    """``extractors.<name>``: any ExtractorSpec field but the fixed ones; ``params`` as the YAML declares them."""
    hints = get_type_hints(ExtractorSpec)
    params = create_model(f"{spec.name}_params", __base__=Section,
                          **{k: (Literal[tuple(spec.choices[k])] if k in spec.choices else _param_type(v), None)
                             for k, v in spec.params.items()})
    fields = {f.name: (params if f.name == "params" else _SPEC_LIMITS.get(f.name, hints[f.name]), None)
              for f in dataclasses.fields(ExtractorSpec) if f.name not in FIXED_SPEC_FIELDS}
    return create_model(f"{spec.name}_override", __base__=Section, **fields)


def run_config_model(backends: Sequence[str], specs: Mapping[str, ExtractorSpec]) -> type[Section]:
    """The model of a whole run configuration, for these decode backends and these extractor specs."""
    names = Literal[tuple(sorted(specs))]
    decode = create_model("decode", __base__=Decode, backend=(Literal[tuple(backends)], "auto"))
    overrides = create_model("extractors", __base__=Section,
                             **{name: (_override_model(spec), None) for name, spec in sorted(specs.items())})
    default_groups = {"visual": "efficientnet_lite0", "audio": "logmel", "text": "e5_small"}
    return create_model(
        "run_config", __base__=Section,
        groups=(dict[str, names], Field(default_factory=lambda: dict(default_groups))),
        decode=(decode, Field(default_factory=decode)),
        store=(Store, Field(default_factory=Store)),
        run=(Run, Field(default_factory=Run)),
        static=(Static, Field(default_factory=Static)),
        stream=(Stream, Field(default_factory=Stream)),
        extractors=(overrides, Field(default_factory=overrides)),
    )


# ---- reading a model back, for error lines ---------------------------------------------------------------------
def _field_type(field: FieldInfo) -> Any:
    return Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation


def type_at(model: type[BaseModel], loc: Sequence[str | int]) -> Any:
    """The declared type at a dotted location of ``model`` (None where the location is not in the schema)."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = _field_type(tp.model_fields[part])
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        else:
            return None
    return tp


def union_loc(model: type[BaseModel], loc: Sequence[str | int]) -> tuple:
    """``loc`` cut at the first field whose type is a union of several kinds (``5 | "auto"``): pydantic reports a
    value there once per kind, under a tag of each kind appended to the field's location; the user gave one value."""
    for i in range(1, len(loc)):
        tp = _unwrap(type_at(model, loc[:i]))
        if _is_union(tp):
            return tuple(loc[:i])
    return tuple(loc)


def _unwrap(tp: Any) -> Any:
    """Drop ``Annotated`` and ``| None`` to reach the type that holds keys."""
    if get_origin(tp) is Annotated:
        return _unwrap(get_args(tp)[0])
    args = [a for a in get_args(tp) if a is not type(None)]
    if _is_union(tp) and len(args) == 1:
        return _unwrap(args[0])
    return tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def allowed_keys(tp: Any) -> list[str]:
    """The keys a mapping type accepts (empty when any key is accepted)."""
    tp = _unwrap(tp)
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def describe(tp: Any) -> str:
    """What a type accepts, in words: ``an integer >= 0``, ``one of: float32, float16``, ``a string or null``."""
    bounds: list[str] = []
    if get_origin(tp) is Annotated:
        tp, *meta = get_args(tp)
        for m in meta:
            for c in (m.metadata if isinstance(m, FieldInfo) else [m]):
                bounds += [f"{op} {getattr(c, attr)}" for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="),
                                                                       ("lt", "<")) if hasattr(c, attr)]
    if _is_union(tp):
        args = get_args(tp)
        words = " or ".join(describe(a) for a in args if a is not type(None))
        return words + (" or null" if type(None) in args else "")
    if get_origin(tp) is Literal:
        values = [str(a) for a in get_args(tp)]
        return values[0] if len(values) == 1 else "one of: " + ", ".join(values)
    if get_origin(tp) is dict:
        return f"a mapping (name: {describe(get_args(tp)[1])})"
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping",
             list: "a list", Any: "any value"}.get(tp)
    if words is None:
        words = "a mapping" if isinstance(tp, type) and issubclass(tp, BaseModel) else str(tp)
    return " ".join([words, *bounds])
