"""Write a polars DataFrame to CSV, Parquet and SAS XPORT with trialport, then read the files back.

Run: python examples/python/export_polars.py [OUT_DIR]   (after `pip install ./bindings-python polars`)
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path

import polars as pl

import trialport

# %% A demographics dataset as an analyst has it.
dm = pl.DataFrame(
    {
        "STUDYID": ["TP-001"] * 4,
        "USUBJID": ["TP-001-0001", "TP-001-0002", "TP-001-0003", "TP-001-0004"],
        "SEX": ["F", "M", "F", None],
        "AGE": [34, 58, 61, None],
        "RFSTDTC": [dt.date(2024, 1, 5), dt.date(2024, 1, 9), dt.date(2024, 2, 1), None],
    }
)

# %% Metadata travels with the data: the same document as the CLI's --meta, here keyed by column name.
columns = {
    "STUDYID": {"label": "Study Identifier"},
    "USUBJID": {"label": "Unique Subject Identifier", "keySequence": 1, "privacy": "subject_id"},
    "SEX": {"label": "Sex"},
    "AGE": {"label": "Age", "privacy": "age"},
    "RFSTDTC": {"label": "Subject Reference Start Date", "privacy": "date"},
}

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="trialport-"))
out.mkdir(parents=True, exist_ok=True)

# %% One call per file; the format comes from the extension unless given. Files appear only when complete.
for name, options in [("dm.csv", {"delimiter": ","}), ("dm.parquet", {"compression": "zstd"}), ("dm.xpt", {})]:
    summary = trialport.write(dm, out / name, dataset="DM", label="Demographics", columns=columns, options=options)
    print(f"{summary['format']:8} {summary['rows']} rows {summary['bytes']:6} bytes  sha256 {summary['sha256'][:16]}…")

# %% Read back: trialport.read gives an Arrow stream any Arrow library takes.
back = pl.DataFrame(trialport.read(out / "dm.parquet"))
assert back["USUBJID"].to_list() == dm["USUBJID"].to_list()
print(back)
print("files in", out)
