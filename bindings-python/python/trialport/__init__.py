"""trialport: the clinical-trial data export engine, in process.

One-shot calls write and read files::

    import polars as pl
    import trialport

    dm = pl.DataFrame({"USUBJID": ["S1-001", "S1-002"], "AGE": [34, None]})
    trialport.write(dm, "dm.parquet", dataset="DM", label="Demographics")
    back = pl.DataFrame(trialport.read("dm.parquet"))

The :class:`Engine` runs the eight operations (exports as jobs, listing, waiting, downloading, the formats) on a home
directory, with API keys, permissions and a hash-chained audit trail. Errors are :class:`ExportError` subclasses, one
per stable code.
"""

from __future__ import annotations

from . import _trialport
from ._engine import Artifact, Engine, Job, Page, Progress
from ._io import formats, init_home, read, write
from ._typing import (
    ArrowArrayExportable,
    ArrowStreamExportable,
    ColumnsMeta,
    Data,
    DatasetSelection,
    JobState,
    OptionValue,
)
from .errors import (
    ConflictError,
    ExportError,
    NotFoundError,
    RateLimitError,
    ServerError,
    UnauthorizedError,
    ValidationError,
)

__version__: str = _trialport.__version__

__all__ = [
    "Artifact",
    "ArrowArrayExportable",
    "ArrowStreamExportable",
    "ColumnsMeta",
    "ConflictError",
    "Data",
    "DatasetSelection",
    "Engine",
    "ExportError",
    "Job",
    "JobState",
    "NotFoundError",
    "OptionValue",
    "Page",
    "Progress",
    "RateLimitError",
    "ServerError",
    "UnauthorizedError",
    "ValidationError",
    "__version__",
    "formats",
    "init_home",
    "read",
    "write",
]
