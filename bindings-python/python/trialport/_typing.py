"""Types shared by the public API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

__all__ = [
    "ArrowArrayExportable",
    "ArrowStreamExportable",
    "ColumnsMeta",
    "Data",
    "DatasetSelection",
    "JobState",
    "OptionValue",
]


@runtime_checkable
class ArrowStreamExportable(Protocol):
    """Anything with the Arrow PyCapsule stream interface: a pyarrow Table or RecordBatchReader, a polars or pandas
    DataFrame, an arro3 or duckdb result, or what :func:`trialport.read` returns."""

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...


@runtime_checkable
class ArrowArrayExportable(Protocol):
    """Anything with the Arrow PyCapsule array interface, such as a pyarrow RecordBatch."""

    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]: ...


Data: TypeAlias = ArrowStreamExportable | ArrowArrayExportable
"""Tabular data trialport accepts, without copies."""

OptionValue: TypeAlias = str | int | float | bool
"""A format option value; numbers and booleans are passed as their text (``True`` as ``"true"``)."""

ColumnsMeta: TypeAlias = Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]]
"""Column metadata in the Dataset-JSON shape (``name``, ``label``, ``dataType``, ``length``, ``displayFormat``,
``keySequence``, ``codelist``, ``origin``, ``privacy``): a list of column objects, or a dict keyed by column name."""

DatasetSelection: TypeAlias = str | Mapping[str, Any]
"""A dataset to export: its name, or ``{"name": ..., "columns": [...], "filters": [{"column", "op", "value"}]}``."""

JobState: TypeAlias = Literal["queued", "running", "succeeded", "failed", "cancelled", "expired"]
"""The states of a job."""
