"""CDISC Dataset-JSON through the Python surface: ``trialport.write(..., format="dataset-json")`` in its three forms,
checked by readers nobody here wrote (the CDISC JSON Schema through the ``jsonschema`` package, the standard library's
``json`` and ``zlib``, pyarrow, polars), and ``trialport.read`` of our files and of CDISC's published examples."""

from __future__ import annotations

import datetime as dt
import json
import zlib
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

import trialport
from conftest import ROWS, as_pyarrow, corpus, need



COLUMNS: dict[str, dict[str, Any]] = {
    "USUBJID": {"label": "Unique Subject Identifier", "length": 6, "keySequence": 1},
    "AGE": {"label": "Age"},
    "RFSTDT": {"label": "Reference Start Date", "displayFormat": "DATE9."},
}


def write(path: Path, **options: Any) -> dict[str, Any]:
    return trialport.write(
        as_pyarrow(),
        path,
        format="dataset-json",
        dataset="DM",
        label="Demographics",
        columns=COLUMNS,
        **options,
    )


def expected_rows() -> list[list[Any]]:
    """The rows as Dataset-JSON holds them: dates as ISO 8601 text, missing values as null."""
    return [
        [
            ROWS["USUBJID"][i],
            ROWS["SEX"][i],
            ROWS["AGE"][i],
            ROWS["WEIGHT"][i],
            None if ROWS["RFSTDT"][i] is None else ROWS["RFSTDT"][i].isoformat(),
            ROWS["FLAG"][i],
        ]
        for i in range(len(ROWS["USUBJID"]))
    ]


def test_json_validates_against_the_cdisc_schema(tmp_path: Path) -> None:
    jsonschema = need("jsonschema")
    schema = json.loads((corpus() / "schema" / "dataset.schema.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)
    path = tmp_path / "dm.json"
    summary = write(path)
    assert summary["format"] == "dataset-json"
    assert summary["rows"] == 4
    doc = json.loads(path.read_text(encoding="utf-8"))
    errors = [f"{e.message} at {list(e.absolute_path)}" for e in validator.iter_errors(doc)]
    assert errors == []
    assert list(doc)[:2] == ["datasetJSONCreationDateTime", "datasetJSONVersion"]
    assert list(doc)[-2:] == ["columns", "rows"]
    assert (doc["name"], doc["label"], doc["itemGroupOID"], doc["records"]) == ("DM", "Demographics", "IG.DM", 4)
    types = {c["name"]: (c["dataType"], c.get("targetDataType")) for c in doc["columns"]}
    assert types == {
        "USUBJID": ("string", None),
        "SEX": ("string", None),
        "AGE": ("integer", None),
        "WEIGHT": ("double", None),
        "RFSTDT": ("date", "integer"),
        "FLAG": ("boolean", None),
    }
    usubjid = doc["columns"][0]
    assert (usubjid["itemOID"], usubjid["label"], usubjid["length"], usubjid["keySequence"]) == (
        "IT.DM.USUBJID",
        "Unique Subject Identifier",
        6,
        1,
    )
    assert doc["columns"][4]["displayFormat"] == "DATE9."
    assert doc["rows"] == expected_rows()
    # The schema is not vacuous: a broken copy fails it.
    doc["columns"][0]["dataType"] = "text"
    assert not validator.is_valid(doc)


def test_ndjson_and_dsjc_hold_the_same_content(tmp_path: Path) -> None:
    nd = tmp_path / "dm.ndjson"
    write(nd, form="ndjson")
    lines = nd.read_text(encoding="utf-8").splitlines()
    head = json.loads(lines[0])
    assert "rows" not in head and head["records"] == 4
    assert [json.loads(line) for line in lines[1:]] == expected_rows()
    dsjc = tmp_path / "dm.dsjc"
    write(dsjc, options={"form": "dsjc", "compression_level": 6})
    assert zlib.decompress(dsjc.read_bytes()) == nd.read_bytes()
    # Each form reads back to the same table, types and metadata included.
    js = tmp_path / "dm.json"
    write(js)
    tables = [pa.table(trialport.read(p)) for p in (js, nd, dsjc)]
    assert tables[0].equals(tables[1]) and tables[0].equals(tables[2])
    assert tables[0].schema.field("RFSTDT").type == pa.date32()
    assert tables[0].column("RFSTDT").to_pylist()[0] == dt.date(2024, 1, 5)


def test_read_keeps_the_metadata(tmp_path: Path) -> None:
    path = tmp_path / "dm.json"
    write(path)
    table = pa.table(trialport.read(path))
    md = table.schema.metadata or {}
    assert md[b"trialport.dataset"] == b"DM"
    assert md[b"trialport.label"] == b"Demographics"
    field = table.schema.field("AGE")
    assert (field.metadata or {})[b"trialport.label"] == b"Age"
    assert (field.metadata or {})[b"trialport.data_type"] == b"integer"
    df = pl.DataFrame(trialport.read(path, "dataset-json"))
    assert df["AGE"].to_list() == ROWS["AGE"]
    assert df["WEIGHT"].to_list() == ROWS["WEIGHT"]


def test_the_published_examples_read_alike() -> None:
    examples = corpus() / "datasetjson-examples" / "adam"
    cdisc = json.loads((examples / "adsl.json").read_text(encoding="utf-8"))
    names = [c["name"] for c in cdisc["columns"]]
    for ext in ("json", "ndjson", "dsjc"):
        df = pl.DataFrame(trialport.read(examples / f"adsl.{ext}"))
        assert df.columns == names, ext
        assert df.height == cdisc["records"] == 254, ext
        assert df["USUBJID"].to_list() == [r[names.index("USUBJID")] for r in cdisc["rows"]], ext
        assert df["BMIBL"].to_list() == [r[names.index("BMIBL")] for r in cdisc["rows"]], ext
        trtsdt = [None if v is None else v.isoformat() for v in df["TRTSDT"].to_list()]
        assert trtsdt == [r[names.index("TRTSDT")] for r in cdisc["rows"]], ext


def test_bad_input_is_a_validation_error(tmp_path: Path) -> None:
    path = tmp_path / "dm.json"
    write(path)
    good = json.loads(path.read_text(encoding="utf-8"))
    # Found while opening (the metadata): a typed error.
    doc = json.loads(json.dumps(good))
    doc["columns"][2]["dataType"] = "number"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(trialport.ValidationError) as info:
        trialport.read(path)
    assert (info.value.reason, info.value.field) == ("unknown_data_type", "columns[2].dataType")
    # Found while streaming the rows: the Arrow stream fails with the standard error's code and reason.
    for reason in ("type_mismatch", "records_mismatch"):
        doc = json.loads(json.dumps(good))
        if reason == "type_mismatch":
            doc["rows"][1][2] = "unknown"
        else:
            doc["records"] = 5
        path.write_text(json.dumps(doc), encoding="utf-8")
        with pytest.raises(Exception, match=rf"EXP002 \({reason}\)"):
            pa.table(trialport.read(path))
    with pytest.raises(trialport.ValidationError) as info:
        trialport.write(as_pyarrow(), tmp_path / "x.json", format="dataset-json")
    assert info.value.reason == "missing_dataset_name"
