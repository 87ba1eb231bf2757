"""SAS dates, datetimes and times read from XPT as dates, timestamps and times (newcomer finding 17).

Oracles: pyreadstat (ReadStat, as haven) and pandas' own XPORT reader, on the SAS-written files of the conformance
corpus, column by column; and pandas' datetimes written by ``trialport.write`` and read back.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

import trialport
from conftest import corpus, need

SAS_EPOCH = dt.date(1960, 1, 1)
SAS_EPOCH_DT = dt.datetime(1960, 1, 1)


# Every SAS-written XPT file of the corpus, with its text encoding.
FILES = [
    ("phuse-cdiscpilot01/adam/adsl.xpt", "ascii"),
    ("phuse-cdiscpilot01/adam/adtte.xpt", "ascii"),
    ("phuse-cdiscpilot01/sdtm/dm.xpt", "ascii"),
    ("phuse-cdiscpilot01/sdtm/ex.xpt", "ascii"),
    ("phuse-cdiscpilot01/sdtm/ta.xpt", "ascii"),
    ("datasetjson-examples/adam/adsl.xpt", "ascii"),
    ("datasetjson-examples/adam/adtte.xpt", "ascii"),
    ("datasetjson-examples/sdtm/dm.xpt", "ascii"),
    ("datasetjson-examples/sdtm/ae.xpt", "ascii"),
]


def missing(v: Any) -> bool:
    return v is None or v is pd.NaT or (isinstance(v, float) and v != v)


def as_date(v: Any) -> dt.date | None:
    """A date from pyreadstat (``datetime.date``) or trialport through pandas (``datetime.date`` or Timestamp)."""
    if missing(v):
        return None
    if isinstance(v, pd.Timestamp):
        v = v.to_pydatetime()
    if isinstance(v, dt.datetime):
        assert v.time() == dt.time(0), v
        return v.date()
    assert isinstance(v, dt.date), type(v)
    return v


@pytest.mark.parametrize("name,encoding", FILES)
def test_conformance_files_read_as_pyreadstat_and_pandas_read_them(name: str, encoding: str) -> None:
    pyreadstat = need("pyreadstat")
    path = corpus() / name
    table = pa.table(trialport.read(path))
    ours = table.to_pandas()
    theirs, meta = pyreadstat.read_xport(str(path), encoding=encoding)
    by_pandas = pd.read_sas(path, format="xport", encoding=encoding)
    assert list(ours.columns) == list(theirs.columns) == list(by_pandas.columns)
    assert len(ours) == len(theirs) == len(by_pandas)
    dates = 0
    for col in ours.columns:
        arrow_type = table.schema.field(col).type
        fmt = meta.original_variable_types[col] or ""
        theirs_types = {type(v).__name__ for v in theirs[col] if not missing(v)}
        if theirs_types == {"date"}:
            # pyreadstat converted it by its SAS date format: so do we, to date32, with the same dates.
            dates += 1
            assert arrow_type == pa.date32(), (col, fmt)
            assert [as_date(v) for v in ours[col]] == [as_date(v) for v in theirs[col]], col
            # pandas' XPORT reader applies no formats: its numbers are days since 1960-01-01.
            want = [None if missing(v) else SAS_EPOCH + dt.timedelta(days=float(v)) for v in by_pandas[col]]
            assert [as_date(v) for v in ours[col]] == want, col
        elif pa.types.is_string(arrow_type):
            assert list(ours[col]) == list(theirs[col]), col
        else:
            assert arrow_type == pa.float64(), (col, fmt, arrow_type)
            a = [None if missing(v) else float(v) for v in ours[col]]
            assert a == [None if missing(v) else float(v) for v in theirs[col]], col
    if "/adam/" in name:
        assert dates >= 4, dates


def test_the_raw_option_gives_the_sas_numbers_pandas_reads() -> None:
    path = corpus() / "datasetjson-examples/adam/adsl.xpt"
    raw = pa.table(trialport.read(path, options={"xpt_dates": "number"}))
    typed = pa.table(trialport.read(path))
    by_pandas = pd.read_sas(path, format="xport", encoding="ascii")
    assert typed.schema.field("TRTSDT").type == pa.date32()
    assert raw.schema.field("TRTSDT").type == pa.float64()
    got = raw.column("TRTSDT").to_pylist()
    want = [None if missing(v) else float(v) for v in by_pandas["TRTSDT"]]
    assert got == want
    # The display format is in the field metadata either way.
    for t in (raw, typed):
        assert (t.schema.field("TRTSDT").metadata or {})[b"trialport.display_format"] == b"DATE9."


def test_pandas_datetimes_written_to_xpt_read_back_as_datetimes(tmp_path: Path) -> None:
    """The finding's case: a pandas datetime column written with trialport.write comes back as datetime64."""
    df = pd.DataFrame(
        {
            "USUBJID": ["S1-001", "S1-002", "S1-003"],
            "ADTM": pd.to_datetime(
                [dt.datetime(2024, 1, 5, 7, 30, 15), None, dt.datetime(1959, 12, 31, 23, 59, 59, 500_000)]
            ),
            "ADT": [dt.date(2024, 1, 5), None, dt.date(1582, 10, 15)],
            "ATM": [dt.time(8, 30), dt.time(0, 0), None],
        }
    )
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.set_column(2, "ADT", pa.array(df["ADT"].tolist(), pa.date32()))
    table = table.set_column(3, "ATM", pa.array(df["ATM"].tolist(), pa.time64("us")))
    path = tmp_path / "adx.xpt"
    trialport.write(table, path, dataset="ADX")
    back = pa.table(trialport.read(path))
    assert back.schema.field("ADTM").type == pa.timestamp("us")
    assert back.schema.field("ADT").type == pa.date32()
    assert back.schema.field("ATM").type == pa.time64("us")
    got = back.to_pandas()
    assert str(got["ADTM"].dtype).startswith("datetime64")
    assert got["ADTM"].tolist()[0] == pd.Timestamp("2024-01-05 07:30:15")
    assert got["ADTM"].isna().tolist() == [False, True, False]
    assert got["ADTM"].tolist()[2] == pd.Timestamp("1959-12-31 23:59:59.5")
    assert got["ADT"].tolist()[0] == dt.date(2024, 1, 5)
    assert got["ADT"].tolist()[2] == dt.date(1582, 10, 15)
    assert back.column("ATM").to_pylist() == [dt.time(8, 30), dt.time(0, 0), None]
    # pyreadstat reads the same file to the same values.
    pyreadstat = need("pyreadstat")
    theirs, _ = pyreadstat.read_xport(str(path))
    assert theirs["ADTM"].tolist()[0] == pd.Timestamp("2024-01-05 07:30:15")
    assert theirs["ADT"].tolist()[0] == dt.date(2024, 1, 5)
    assert theirs["ATM"].tolist()[0] == dt.time(8, 30)
    # And the numbers, kept by the option, are SAS's: seconds since 1960-01-01.
    raw = pa.table(trialport.read(path, options={"xpt_dates": "number"}))
    assert raw.column("ADTM").to_pylist()[0] == (dt.datetime(2024, 1, 5, 7, 30, 15) - SAS_EPOCH_DT).total_seconds()


def test_read_options_are_listed_and_checked(tmp_path: Path) -> None:
    xpt = next(f for f in trialport.formats() if f["id"] == "xpt")
    dates = next(o for o in xpt["read_options"] if o["name"] == "xpt_dates")
    assert dates["default"] == "typed"
    assert dates["values"] == ["typed", "number"]
    path = tmp_path / "x.xpt"
    trialport.write(pa.table({"A": pa.array([dt.date(2024, 1, 1)], pa.date32())}), path, dataset="X")
    for bad in ({"xpt_dates": "raw"}, {"dates": "number"}):
        with pytest.raises(trialport.ValidationError) as e:
            trialport.read(path, options=bad)
        assert e.value.field == "options"
