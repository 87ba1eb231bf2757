"""Translation of Python arguments into the JSON the native module hands to the core (which validates it)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._typing import ColumnsMeta, OptionValue


def option_text(value: OptionValue) -> str:
    """The text of one option value, as the CLI's ``--option name=value`` would give it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def options_json(
    options: Mapping[str, OptionValue] | None, extra: Mapping[str, OptionValue]
) -> dict[str, str]:
    """Options from a dict and keyword arguments (keyword arguments win), as strings; ``None`` values are left out."""
    merged: dict[str, OptionValue] = {}
    if options is not None:
        merged.update(options)
    merged.update(extra)
    return {str(k): option_text(v) for k, v in merged.items() if v is not None}


def columns_list(columns: ColumnsMeta) -> list[dict[str, Any]]:
    """Column metadata as the list of column objects of a metadata document."""
    if isinstance(columns, Mapping):
        return [{**dict(spec), "name": name} for name, spec in columns.items()]
    return [dict(c) for c in columns]


def meta_json(dataset: str | None, label: str | None, columns: ColumnsMeta | None) -> str | None:
    """The metadata document (``--meta`` of the CLI) for ``dataset=``, ``label=`` and ``columns=``."""
    if dataset is None and label is None and columns is None:
        return None
    doc: dict[str, Any] = {}
    if dataset is not None:
        doc["name"] = dataset
    if label is not None:
        doc["label"] = label
    if columns is not None:
        doc["columns"] = columns_list(columns)
    return json.dumps(doc)


def request_json(request: Mapping[str, Any]) -> str:
    """A request as JSON text; keys whose value is ``None`` are left out (the core's defaults apply)."""
    return json.dumps({k: v for k, v in request.items() if v is not None})
