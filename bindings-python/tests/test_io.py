"""`trialport.write`, `trialport.read` and `trialport.formats`: every input kind to every data format, read back by
readers nobody here wrote (pyarrow, polars, openpyxl, pyreadstat, pandas)."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
from openpyxl.utils.escape import unescape
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc as pa_ipc
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import pytest

import trialport
from conftest import ROWS, as_pyarrow
from test_dataset_json import corpus, need

FORMATS = {f["id"]: f for f in trialport.formats()}
DATA_FORMATS = sorted(i for i, f in FORMATS.items() if "data" in f["capabilities"])
SAS_EPOCH = dt.date(1960, 1, 1)

Columns = dict[str, list[Any]]


def plain(value: Any) -> Any:
    """NaN as None, midnight datetimes as dates: the readers' spellings of the same values."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime) and value.time() == dt.time(0):
        return value.date()
    return value


def columns_of(names: list[str], rows: list[tuple[Any, ...]]) -> Columns:
    return {n: [plain(r[i]) for r in rows] for i, n in enumerate(names)}


def from_arrow(table: pa.Table) -> Columns:
    return {n: [plain(v) for v in table.column(n).to_pylist()] for n in table.column_names}


def from_polars(df: pl.DataFrame) -> Columns:
    return {n: [plain(v) for v in df[n].to_list()] for n in df.columns}


def iso_dates(values: list[Any]) -> list[Any]:
    return [v.isoformat() if isinstance(v, dt.date) else v for v in values]


def expected(fmt: str) -> Columns:
    """The dataset as format `fmt` keeps it."""
    rows = copy.deepcopy(ROWS)
    if fmt in ("json", "ndjson", "dataset-json"):
        rows["RFSTDT"] = iso_dates(rows["RFSTDT"])  # JSON has no date type: ISO 8601 text
    if fmt == "xpt":
        rows["SEX"] = [v or "" for v in rows["SEX"]]  # XPT: a missing character value is blank
        rows["FLAG"] = [None if v is None else float(v) for v in rows["FLAG"]]  # booleans are numeric 1/0
    return rows


# --- oracles: each reads a file written by trialport and returns its columns -------------------------------------


def csv_by_pyarrow(delimiter: str) -> Callable[[Path], Columns]:
    def read(path: Path) -> Columns:
        table = pa_csv.read_csv(
            path,
            parse_options=pa_csv.ParseOptions(delimiter=delimiter),
            convert_options=pa_csv.ConvertOptions(strings_can_be_null=True),
        )
        assert_types(table.schema, dates=True)
        return from_arrow(table)

    return read


def csv_by_polars(separator: str) -> Callable[[Path], Columns]:
    return lambda path: from_polars(pl.read_csv(path, separator=separator, try_parse_dates=True))


def parquet_by_pyarrow(path: Path) -> Columns:
    table = pq.read_table(path)
    assert_types(table.schema, dates=True)
    return from_arrow(table)


def ipc_by_pyarrow(path: Path) -> Columns:
    table = pa_ipc.open_file(path).read_all()
    assert_types(table.schema, dates=True)
    return from_arrow(table)


def ndjson_by_pyarrow(path: Path) -> Columns:
    got = from_arrow(pa_json.read_json(path))
    got["RFSTDT"] = iso_dates(got["RFSTDT"])  # pyarrow reads ISO dates as timestamps
    return got


def ndjson_by_polars(path: Path) -> Columns:
    return from_polars(pl.read_ndjson(path))


def json_by_stdlib(path: Path) -> Columns:
    records = json.loads(path.read_text())
    names = list(records[0])
    return {n: [r[n] for r in records] for n in names}


def xlsx_by_openpyxl(path: Path) -> Columns:
    sheet = openpyxl.load_workbook(path, read_only=True).worksheets[0]
    header, *rows = list(sheet.iter_rows(values_only=True))
    return columns_of([str(h) for h in header], rows)


def xpt_by_pyreadstat(path: Path) -> Columns:
    pyreadstat = pytest.importorskip("pyreadstat")
    df, meta = pyreadstat.read_xport(str(path))
    assert meta.table_name == "DM"
    return columns_of(list(df.columns), list(df.itertuples(index=False)))


def xpt_by_pandas(path: Path) -> Columns:
    df = pd.read_sas(path, format="xport", encoding="ascii")
    got = columns_of(list(df.columns), list(df.itertuples(index=False)))
    # pandas' XPORT reader turns an IBM zero (eight zero bytes) into 16**-65; SAS and pyreadstat read 0.
    for name in ("AGE", "WEIGHT", "FLAG", "RFSTDT"):
        got[name] = [0.0 if isinstance(v, float) and abs(v) < 1e-70 else v for v in got[name]]
    # pandas does not apply display formats: dates stay SAS day numbers.
    got["RFSTDT"] = [None if v is None else SAS_EPOCH + dt.timedelta(days=v) for v in got["RFSTDT"]]
    return got


def dataset_json_by_stdlib(path: Path) -> Columns:
    """The standard library's JSON parser, after the CDISC Dataset-JSON 1.1 schema (``jsonschema``) accepts it."""
    document = json.loads(path.read_text())
    jsonschema = need("jsonschema")
    schema = json.loads((corpus() / "schema" / "dataset.schema.json").read_text())
    jsonschema.Draft201909Validator(schema).validate(document)
    assert document["name"] == "DM" and document["label"] == "Demographics"
    assert document["records"] == len(document["rows"])
    names = [c["name"] for c in document["columns"]]
    return columns_of(names, [tuple(r) for r in document["rows"]])


ODM = "{http://www.cdisc.org/ns/odm/v1.3}"

# What write() needs for ODM: the dataset has no visit column, so every row is one study event.
WRITE_OPTIONS: dict[str, dict[str, str]] = {"odm-xml": {"event_oid": "SE.SCREEN", "study_oid": "S1"}}


def odm_by_elementtree(path: Path) -> Columns:
    """The standard library's XML parser: one SubjectData per row, ItemData values typed by the written column
    types (ODM carries text), an absent ItemData a null."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{ODM}ODM" and root.get("ODMVersion") == "1.3.2"
    typed: dict[str, Callable[[str], Any]] = {
        "SEX": str,
        "AGE": int,
        "WEIGHT": float,
        "RFSTDT": dt.date.fromisoformat,
        "FLAG": {"true": True, "false": False}.__getitem__,
    }
    got: Columns = {"USUBJID": [], **{name: [] for name in typed}}
    for subject in root.iter(f"{ODM}SubjectData"):
        groups = list(subject.iter(f"{ODM}ItemGroupData"))
        assert [g.get("ItemGroupOID") for g in groups] == ["IG.DM"]
        values = {i.get("ItemOID"): i.get("Value") for i in groups[0].iter(f"{ODM}ItemData")}
        got["USUBJID"].append(subject.get("SubjectKey"))
        for name, parse in typed.items():
            text = values.pop(f"IT.DM.{name}", None)
            got[name].append(None if text is None else parse(text))
        assert not values, f"unexpected items {values}"
    return got


def arrow_by_polars(reader: Callable[[Path], pl.DataFrame]) -> Callable[[Path], Columns]:
    return lambda path: from_polars(reader(path))


ORACLES: dict[str, list[Callable[[Path], Columns]]] = {
    "csv": [csv_by_pyarrow(","), csv_by_polars(",")],
    "tsv": [csv_by_pyarrow("\t"), csv_by_polars("\t")],
    "parquet": [parquet_by_pyarrow, arrow_by_polars(pl.read_parquet)],
    "arrow-ipc": [ipc_by_pyarrow, arrow_by_polars(pl.read_ipc)],
    "ndjson": [ndjson_by_pyarrow, ndjson_by_polars],
    "json": [json_by_stdlib, arrow_by_polars(pl.read_json)],
    "xlsx": [xlsx_by_openpyxl],
    "xpt": [xpt_by_pyreadstat, xpt_by_pandas],
    "dataset-json": [dataset_json_by_stdlib],
    "odm-xml": [odm_by_elementtree],
}


def assert_types(schema: pa.Schema, *, dates: bool) -> None:
    t = {f.name: f.type for f in schema}
    assert pa.types.is_string(t["USUBJID"]) or pa.types.is_large_string(t["USUBJID"]) or pa.types.is_string_view(
        t["USUBJID"]
    )
    assert pa.types.is_int64(t["AGE"])
    assert pa.types.is_float64(t["WEIGHT"])
    assert pa.types.is_boolean(t["FLAG"])
    if dates:
        assert pa.types.is_date32(t["RFSTDT"])


def test_formats_lists_the_data_formats() -> None:
    ids = [f["id"] for f in trialport.formats()]
    assert ids == sorted(ids)
    for required in ("csv", "tsv", "json", "ndjson", "parquet", "arrow-ipc", "xlsx", "xpt"):
        assert required in DATA_FORMATS
    csv = FORMATS["csv"]
    assert csv["extension"] == "csv"
    assert {o["name"]: o["default"] for o in csv["options"]}["delimiter"] == ","


@pytest.mark.parametrize("fmt", DATA_FORMATS)
def test_every_input_to_every_format_reads_back_equal(frame: Any, fmt: str, tmp_path: Path) -> None:
    assert fmt in ORACLES, f"every data format needs an independent reader here: none for {fmt!r}"
    path = tmp_path / f"dm.{FORMATS[fmt]['extension']}"
    summary = trialport.write(frame, path, fmt, dataset="DM", label="Demographics", options=WRITE_OPTIONS.get(fmt))
    data = path.read_bytes()
    assert summary == {
        "path": str(path),
        "format": fmt,
        "rows": len(ROWS["USUBJID"]),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    want = expected(fmt)
    for oracle in ORACLES[fmt]:
        got = oracle(path)
        assert list(got) == list(want), oracle
        assert got == want, oracle


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "ndjson", "parquet", "arrow-ipc"])
def test_read_gives_an_arrow_stream_for_pyarrow_and_polars(fmt: str, tmp_path: Path) -> None:
    path = tmp_path / f"dm.{FORMATS[fmt]['extension']}"
    trialport.write(as_pyarrow(), path, dataset="DM")
    table = pa.table(trialport.read(path))
    assert table.num_rows == 4
    assert from_arrow(table)["USUBJID"] == ROWS["USUBJID"]
    assert from_arrow(table)["AGE"] == ROWS["AGE"]
    df = pl.DataFrame(trialport.read(path, fmt))
    assert df["USUBJID"].to_list() == ROWS["USUBJID"]
    assert (table.schema.metadata or {})[b"trialport.dataset"] == b"DM"


def test_read_streams_batches(tmp_path: Path) -> None:
    path = tmp_path / "dm.parquet"
    trialport.write(as_pyarrow(), path)
    # Any Arrow consumer can take the stream; iterating it directly yields arro3 batches (needs arro3-core).
    batches = list(pa.RecordBatchReader.from_stream(trialport.read(path)))
    assert sum(b.num_rows for b in batches) == 4


def test_metadata_travels_in_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "dm.parquet"
    trialport.write(
        as_pyarrow(),
        path,
        dataset="DM",
        label="Demographics",
        columns={"AGE": {"label": "Age", "privacy": "age"}, "USUBJID": {"label": "Subject", "keySequence": 1}},
    )
    schema = pq.read_schema(path)
    assert schema.metadata[b"trialport.dataset"] == b"DM"
    assert schema.metadata[b"trialport.label"] == b"Demographics"
    assert schema.field("AGE").metadata[b"trialport.label"] == b"Age"
    assert schema.field("AGE").metadata[b"trialport.privacy"] == b"age"
    assert schema.field("USUBJID").metadata[b"trialport.key_sequence"] == b"1"
    # The list form of `columns` is the same document.
    path2 = tmp_path / "dm2.parquet"
    trialport.write(as_pyarrow(), path2, columns=[{"name": "AGE", "label": "Age"}])
    assert pq.read_schema(path2).field("AGE").metadata[b"trialport.label"] == b"Age"
    # And it comes back through trialport.read.
    back = pa.table(trialport.read(path))
    assert back.schema.field("AGE").metadata[b"trialport.label"] == b"Age"


def test_xpt_takes_labels_and_the_dataset_name(tmp_path: Path) -> None:
    pyreadstat = pytest.importorskip("pyreadstat")
    path = tmp_path / "dm.xpt"
    trialport.write(
        as_pyarrow(), path, dataset="DM", label="Demographics", columns={"AGE": {"label": "Age in years"}}
    )
    _, meta = pyreadstat.read_xport(str(path))
    assert meta.table_name == "DM"
    assert meta.column_names_to_labels["AGE"] == "Age in years"
    assert meta.original_variable_types["RFSTDT"].startswith("DATE9")


def test_xpt_version_8_long_names_and_labels_read_by_pyreadstat(tmp_path: Path) -> None:
    """Version 8 carries names up to 32 characters and labels up to 256: pyreadstat, an independent reader, sees
    them, and the values, exactly."""
    pyreadstat = pytest.importorskip("pyreadstat")
    long_label = "A label longer than forty characters, as version 8 allows it"
    table = pa.table(
        {
            "SUBJECT_IDENTIFIER": ["S1-001", "S1-002", None],
            "BASELINE_WEIGHT_KG": [70.5, -0.0, None],
        }
    )
    path = tmp_path / "long.xpt"
    trialport.write(
        table,
        path,
        dataset="LONGNAMES",
        label="Dataset label",
        columns={"BASELINE_WEIGHT_KG": {"label": long_label}},
        options={"version": 8},
    )
    df, meta = pyreadstat.read_xport(str(path))
    assert list(df.columns) == ["SUBJECT_IDENTIFIER", "BASELINE_WEIGHT_KG"]
    assert meta.table_name == "LONGNAMES"
    assert meta.column_names_to_labels["BASELINE_WEIGHT_KG"] == long_label
    assert list(df["SUBJECT_IDENTIFIER"][:2]) == ["S1-001", "S1-002"]
    assert df["BASELINE_WEIGHT_KG"][0] == 70.5
    assert math.isnan(df["BASELINE_WEIGHT_KG"][2])
    # The same names are refused by version 5, with every violation listed.
    with pytest.raises(trialport.ValidationError) as info:
        trialport.write(table, tmp_path / "long5.xpt", dataset="LONGNAMES")
    assert info.value.reason == "fda_check_failed"


def test_xpt_version_8_written_by_pyreadstat_reads_back(tmp_path: Path) -> None:
    """A version 8 file written by ReadStat (pyreadstat) is read with its long names, labels and values."""
    pyreadstat = pytest.importorskip("pyreadstat")
    df = pd.DataFrame({"LONG_VARIABLE_NAME_1": [1.5, 2.25, float("nan")], "TEXT_COLUMN": ["a", "bb", "ccc"]})
    path = tmp_path / "rs8.xpt"
    pyreadstat.write_xport(
        df,
        str(path),
        file_format_version=8,
        table_name="RS8",
        column_labels=["A numeric column with a label over forty chars", "Text"],
    )
    back = pa.table(trialport.read(path))
    assert back.column_names == ["LONG_VARIABLE_NAME_1", "TEXT_COLUMN"]
    assert back.column("LONG_VARIABLE_NAME_1").to_pylist() == [1.5, 2.25, None]
    assert back.column("TEXT_COLUMN").to_pylist() == ["a", "bb", "ccc"]
    label = back.schema.field("LONG_VARIABLE_NAME_1").metadata[b"trialport.label"]
    assert label == b"A numeric column with a label over forty chars"


def test_options_as_a_dict_or_keywords(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    trialport.write(as_pyarrow(), a, options={"delimiter": ";", "header": False})
    lines = a.read_text().splitlines()
    assert lines[0] == "S1-001;F;34;70.5;2024-01-05;true"
    b = tmp_path / "b.csv"
    trialport.write(as_pyarrow(), b, delimiter=";", header=False)
    assert b.read_text() == a.read_text()


def test_record_batches_and_readers_are_accepted(tmp_path: Path) -> None:
    table = as_pyarrow()
    batch = table.to_batches()[0]
    assert trialport.write(batch, tmp_path / "batch.csv")["rows"] == 4
    reader = pa.RecordBatchReader.from_batches(table.schema, [table.slice(0, 2).to_batches()[0], table.slice(2).to_batches()[0]])
    assert trialport.write(reader, tmp_path / "reader.parquet")["rows"] == 4
    assert pq.read_table(tmp_path / "reader.parquet").num_rows == 4


def test_format_from_the_extension(tmp_path: Path) -> None:
    assert trialport.write(as_pyarrow(), tmp_path / "dm.arrow")["format"] == "arrow-ipc"
    assert trialport.write(as_pyarrow(), tmp_path / "dm.ndjson")["format"] == "ndjson"
    assert trialport.write(as_pyarrow(), tmp_path / "dm.out", "csv")["format"] == "csv"


def test_write_errors_carry_code_reason_and_field(tmp_path: Path) -> None:
    with pytest.raises(trialport.NotFoundError) as e:
        trialport.write(as_pyarrow(), tmp_path / "a.csv", "nope")
    assert (e.value.code, e.value.field) == ("EXP001", "format")
    assert "csv" in e.value.details["available"]

    with pytest.raises(trialport.ValidationError) as v:
        trialport.write(as_pyarrow(), tmp_path / "a.unknown")
    assert v.value.reason == "unknown_output_format"

    with pytest.raises(trialport.ValidationError) as v:
        trialport.write(as_pyarrow(), tmp_path / "a.csv", options={"nope": "1"})
    assert (v.value.reason, v.value.field) == ("unknown_option", "options.nope")

    with pytest.raises(trialport.ValidationError) as v:
        trialport.write(as_pyarrow(), tmp_path / "a.csv", columns={"MISSING": {"label": "x"}})
    assert (v.value.reason, v.value.field) == ("unknown_column", "columns")

    with pytest.raises(trialport.ValidationError) as v:
        trialport.write(as_pyarrow(), tmp_path / "a.csv", columns=[{"name": "AGE", "privacy": "secret"}])
    assert v.value.reason == "invalid_metadata"

    # Nothing was left behind by the failed writes.
    assert list(tmp_path.iterdir()) == []

    trialport.write(as_pyarrow(), tmp_path / "a.csv")
    with pytest.raises(trialport.ConflictError) as c:
        trialport.write(as_pyarrow(), tmp_path / "a.csv")
    assert c.value.reason == "artifact_exists"


def test_a_value_the_format_cannot_hold_is_a_validation_error(tmp_path: Path) -> None:
    too_long = pa.table({"A_NAME_TOO_LONG_FOR_XPT": [1.0]})
    with pytest.raises(trialport.ValidationError) as v:
        trialport.write(too_long, tmp_path / "x.xpt", dataset="X")
    assert v.value.code == "EXP002"
    assert list(tmp_path.iterdir()) == []


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(trialport.NotFoundError) as e:
        trialport.read(tmp_path / "missing.csv")
    assert e.value.field == "path"
    (tmp_path / "x.unknown").write_text("a")
    with pytest.raises(trialport.ValidationError):
        trialport.read(tmp_path / "x.unknown")


def test_data_without_the_arrow_interface_is_refused(tmp_path: Path) -> None:
    with pytest.raises((TypeError, ValueError)):
        trialport.write([1, 2, 3], tmp_path / "a.csv")  # type: ignore[arg-type]


def test_xpt_edge_values_read_back_exactly_by_pyreadstat_and_pandas(tmp_path: Path) -> None:
    """Nulls, negative zero, tiny and huge magnitudes, dates, datetimes and 200-byte strings survive XPT v5 as two
    independent readers see them (IBM floats hold every normal double in their range exactly)."""
    pyreadstat = pytest.importorskip("pyreadstat")
    numbers = [1.0, -0.0, None, 1e-70, -3.141592653589793, 7.2e75, 2.0**-200, 123456789.123456789, -1e-75]
    text = ["x" * 200, "", None, "ASCII ~!@#$%^&*()", "y", "z" * 199, "a", "b", "c"]
    dates = [dt.date(1960, 1, 1), dt.date(1959, 12, 31), None, dt.date(2024, 2, 29), dt.date(1900, 1, 1)] * 2
    stamps = [
        dt.datetime(2024, 1, 5, 7, 30, 15),
        dt.datetime(1960, 1, 1, 0, 0, 0),
        None,
        dt.datetime(1959, 12, 31, 23, 59, 59),
        dt.datetime(2099, 12, 31, 12, 0, 1),
    ] * 2
    table = pa.table(
        {
            "NUM": pa.array(numbers, pa.float64()),
            "TEXT": pa.array(text, pa.string()),
            "DATE": pa.array(dates[:9], pa.date32()),
            "DTM": pa.array(stamps[:9], pa.timestamp("us")),
        }
    )
    path = tmp_path / "edge.xpt"
    trialport.write(table, path, dataset="EDGE")

    df, meta = pyreadstat.read_xport(str(path))
    assert meta.number_rows == 9
    for got, want in zip(df["NUM"], numbers):
        if want is None:
            assert math.isnan(got)
        else:
            assert got == want, (got, want)
    # Character "missing" is blank in XPT: a null and an empty string both read back as "".
    assert list(df["TEXT"]) == [t or "" for t in text]
    assert len(df["TEXT"][0].encode()) == 200
    for got, want in zip(df["DATE"], dates[:9]):
        assert (got is None or got != got) if want is None else got == want, (got, want)
    for got, want in zip(df["DTM"], stamps[:9]):
        if want is None:
            assert pd.isna(got)
        else:
            assert pd.Timestamp(got).to_pydatetime() == want, (got, want)

    frame = pd.read_sas(path, format="xport", encoding="ascii")
    for got, want in zip(frame["NUM"], numbers):
        # pandas reads an IBM zero (all mantissa bits clear) as +-16**-65; SAS and pyreadstat read 0.
        got = 0.0 if abs(got) < 1e-77 else got
        if want is None:
            assert math.isnan(got)
        else:
            assert got == want, (got, want)
    assert [t.rstrip() for t in frame["TEXT"].fillna("")] == [t or "" for t in text]


FORMULAS = ['=HYPERLINK("http://x.example","click")', "+1+2", "-3+4", "@SUM(A1:A2)", "\tTAB", "\rCR", "a=b", "plain"]


@pytest.mark.parametrize("neutralize", [True, False])
def test_xlsx_never_holds_a_formula_read_by_openpyxl(neutralize: bool, tmp_path: Path) -> None:
    table = pa.table({"S": pa.array(FORMULAS), "N": pa.array([-1, -2, -3, -4, -5, -6, -7, -8])})
    path = tmp_path / "f.xlsx"
    trialport.write(table, path, options={"neutralize_formulas": str(neutralize).lower()})
    sheet = openpyxl.load_workbook(path).worksheets[0]
    rows = list(sheet.iter_rows(min_row=2))
    for (text_cell, number_cell), raw in zip(rows, FORMULAS, strict=True):
        assert text_cell.data_type == "s", f"{raw!r} was stored as {text_cell.data_type!r}"
        risky = raw[0] in "=+-@\t\r"
        # A carriage return is stored escaped as _x000D_ (OOXML's escape; XML would turn a bare one into a line
        # feed), which openpyxl's own unescape decodes and its cell reader leaves alone.
        assert unescape(text_cell.value) == ("'" + raw if neutralize and risky else raw)
        assert number_cell.data_type == "n" and number_cell.value < 0, "numbers are never touched"


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_csv_and_tsv_neutralize_formulas_read_by_pyarrow(fmt: str, tmp_path: Path) -> None:
    table = pa.table({"S": pa.array(FORMULAS), "X": pa.array([-1.5, -2.0, 0.0, 1.0, -0.5, -1e-300, 2.0, 3.0])})
    delimiter = "," if fmt == "csv" else "\t"
    for neutralize in (True, False):
        path = tmp_path / f"f{neutralize}.{fmt}"
        trialport.write(table, path, options={"neutralize_formulas": str(neutralize).lower()})
        back = pa_csv.read_csv(path, parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True))
        want = ["'" + s if neutralize and s[0] in "=+-@\t\r" else s for s in FORMULAS]
        assert back.column("S").to_pylist() == want
        assert back.column("X").to_pylist() == table.column("X").to_pylist()


def test_a_problem_found_while_a_stream_is_consumed_reaches_the_consumer_with_its_code(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    lines = ["A,B"] + [f"{i},x" for i in range(300_000)] + ["1,2,3"]  # past the first batch
    path.write_text("\n".join(lines) + "\n")
    reader = trialport.read(path)  # the header and first batch are fine
    with pytest.raises(pa.ArrowInvalid, match=r"EXP002 \(malformed_csv\)"):
        pa.table(reader)
