"""One-shot calls that need no engine: the formats, writing one dataset, reading one file, creating a home."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from . import _trialport
from ._convert import meta_json, options_json
from ._typing import ArrowStreamExportable, ColumnsMeta, Data, OptionValue


def formats() -> list[dict[str, Any]]:
    """The formats of this build: ``id``, ``name``, ``extension``, ``media_type``, ``capabilities`` and ``options``
    (each with ``name``, ``default``, ``description`` and, for a closed set, ``values``), sorted by id; a readable
    format with read options (``csv``, ``tsv``, ``xpt``: those of :func:`read`'s ``options``) has them under
    ``read_options``, in the same shape."""
    result: list[dict[str, Any]] = json.loads(_trialport.formats())
    return result


def write(
    data: Data,
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    dataset: str | None = None,
    label: str | None = None,
    columns: ColumnsMeta | None = None,
    options: Mapping[str, OptionValue] | None = None,
    **format_options: OptionValue,
) -> dict[str, Any]:
    """Writes one dataset to a file.

    Args:
        data: Anything with ``__arrow_c_stream__`` (pyarrow Table or RecordBatchReader, polars or pandas DataFrame,
            duckdb or arro3 results) or ``__arrow_c_array__`` (a pyarrow RecordBatch). Read without copies.
        path: The file to create. It appears only when complete; an existing file is not replaced.
        format: A format id (see :func:`formats`); by default the format of the path's extension.
        dataset: The dataset name, e.g. ``"DM"`` (needed by formats that store it, such as XPT).
        label: The dataset label, e.g. ``"Demographics"``.
        columns: Column metadata as the CLI's ``--meta``: a list of column objects in the Dataset-JSON shape, or a
            dict keyed by column name, e.g. ``{"AGE": {"label": "Age", "privacy": "age"}}``.
        options: Format options by name (the CLI's ``--option name=value``), e.g. ``{"delimiter": ";"}``.
        **format_options: More format options, as keyword arguments.

    Returns:
        ``{"path", "format", "rows", "bytes", "sha256"}``.

    Raises:
        NotFoundError: Unknown format.
        ValidationError: Bad options or metadata, data the format cannot represent, or an extension that names no
            format.
        ConflictError: The file exists.
        ServerError: I/O failure.
    """
    summary = _trialport.write(
        data,
        os.fspath(path),
        format,
        meta_json(dataset, label, columns),
        json.dumps(options_json(options, format_options)),
    )
    result: dict[str, Any] = json.loads(summary)
    return result


def read(
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    options: Mapping[str, OptionValue] | None = None,
) -> ArrowStreamExportable:
    """Opens a file as a stream of Arrow record batches.

    The result has ``__arrow_c_stream__``, so ``pyarrow.table(r)``, ``polars.DataFrame(r)`` or any Arrow consumer
    takes it (once: it is a stream); iterating it yields record batches. Dataset metadata (name, labels, ...) is in
    the schema metadata under ``trialport.*`` keys, including a ``<STEM>.meta.json`` beside the file.

    XPT: numerics with a SAS date, datetime or time format (``DATE9.``, ``YYMMDD10.``, ``DATETIME20.``,
    ``E8601DT19.``, ``TIME8.``, ...) are Arrow ``date32``, ``timestamp[us]`` and ``time64[us]`` (so
    ``pyarrow.table(r).to_pandas()`` gives ``datetime64`` columns for datetimes, and dates as ``datetime.date``
    objects or, with ``date_as_object=False``, ``datetime64``); ``options={"xpt_dates": "number"}`` keeps the SAS
    numbers (days or seconds since 1960-01-01, seconds since midnight). The display format stays in the field
    metadata, so writing the data back as XPT gives the same format.

    Args:
        path: The file.
        format: A format id; by default the format of the path's extension.
        options: Read options (:func:`formats` lists them under ``read_options``): ``xpt_dates`` (``"typed"``, the
            default, or ``"number"``), ``xpt_allow_nul_padding`` (bool), ``csv_max_field_bytes`` and
            ``csv_max_record_bytes`` (int).

    Raises:
        NotFoundError: The file does not exist.
        ValidationError: Unknown or unreadable format; an unknown read option or a bad value.

    A problem found only while the stream is consumed (a bad value deep in the file) is raised by the consumer, not
    as a :class:`ValidationError`: the Arrow C stream interface carries an error message, not an exception type.
    pyarrow raises ``ArrowInvalid`` and polars its own error, each with the standard error's text, such as
    ``External error: EXP002 (malformed_csv): ...``.
    """
    reader: ArrowStreamExportable = _trialport.read(
        os.fspath(path), format, None if options is None else json.dumps(dict(options))
    )
    return reader


def init_home(
    home: str | os.PathLike[str],
    org: str = "default",
    *,
    source: str | os.PathLike[str] | None = None,
) -> str:
    """Creates a home directory (the embedded default deployment: a SQLite store, artifacts, configuration) and the
    organization's first ``admin`` API key, as ``trialport --home DIR init`` does.

    Args:
        home: The directory (created when missing; must not be a home already).
        org: The organization the admin key belongs to.
        source: A directory of study data (``DIR/<study>/<DATASET>.<ext>``) the engine reads from.

    Returns:
        The API key text, shown only this once: the credential is ``f"ApiKey {key}"``.

    Raises:
        ConflictError: The directory is a home already.
        ValidationError: Invalid organization or source.
    """
    return _trialport.init_home(
        os.fspath(home), org, None if source is None else os.fspath(source)
    )
