"""Column types of the lakes' row models: DuckDB and Arrow types derived from pydantic fields.

The results lake's rows are `ResultRow` (bench/lake.py), the traces lake's `TraceRecord`
(tracing/schema.py). Everything that writes or reads those files — the Parquet writers, the DuckDB
views of the warehouse — takes its column names and types from here, so a field added to a row
model is a column everywhere at once.

A field's annotation decides its type: `str` and `Literal[...]` are VARCHAR, `int` BIGINT, `float`
DOUBLE, `bool` BOOLEAN, `datetime` TIMESTAMPTZ (UTC), `list[str]` VARCHAR[]; `X | None` is X. A
narrower SQL type is asked for with `Annotated[int, SqlType("INTEGER")]` (the `Int32` alias).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class SqlType:
    """The DuckDB type of a field, when its Python type alone would say a wider one."""

    name: str


Int32 = Annotated[int, SqlType("INTEGER")]

_SIMPLE = {str: "VARCHAR", int: "BIGINT", float: "DOUBLE", bool: "BOOLEAN", datetime: "TIMESTAMPTZ"}


def _sql_type(annotation: Any, metadata: list[Any], where: str) -> str:
    for m in metadata:
        if isinstance(m, SqlType):
            return m.name
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _sql_type(args[0], metadata, where)
    if origin is Annotated:
        base, *extra = typing.get_args(annotation)
        return _sql_type(base, [*metadata, *extra], where)
    if origin is Literal:
        return "VARCHAR"
    if origin is list and typing.get_args(annotation) == (str,):
        return "VARCHAR[]"
    if annotation in _SIMPLE:
        return _SIMPLE[annotation]
    raise TypeError(f"{where}: type {annotation!r} has no column type (goat_dagster/tabular.py)")


def duckdb_columns(model: type[BaseModel]) -> dict[str, str]:
    """Column name -> DuckDB type, in the model's field order."""
    return {
        name: _sql_type(f.annotation, list(f.metadata), f"{model.__name__}.{name}")
        for name, f in model.model_fields.items()
    }


def literal_values(model: type[BaseModel], field: str) -> tuple[str, ...]:
    """The values a `Literal[...]` (or `Literal[...] | None`) field may take."""
    annotation = model.model_fields[field].annotation
    for candidate in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(candidate) is Literal:
            return tuple(typing.get_args(candidate))
    raise TypeError(f"{model.__name__}.{field} is not a Literal field")


def arrow_schema(model: type[BaseModel]) -> pa.Schema:
    """The Arrow schema of the model's rows (what its Parquet files hold)."""
    import pyarrow as pa  # only the writers of Parquet need it; `goat run` does not pay for it

    arrow = {
        "VARCHAR": pa.string(),
        "VARCHAR[]": pa.list_(pa.string()),
        "BIGINT": pa.int64(),
        "INTEGER": pa.int32(),
        "DOUBLE": pa.float64(),
        "BOOLEAN": pa.bool_(),
        "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([pa.field(name, arrow[t]) for name, t in duckdb_columns(model).items()])
