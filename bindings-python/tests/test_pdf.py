"""Reports as archival PDF from Python, checked by independent readers: pypdf (structure, text, XMP metadata,
fonts) and poppler's ``pdftoppm`` (every page renders). A signed report's PDF and HTML show the signature."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pypdf import PdfReader

import trialport
from conftest import Home

PASSWORD = "correct horse battery"
PDFAID = "{http://www.aiim.org/pdfa/ns/id/}"

DM = pl.DataFrame(
    {
        "USUBJID": [f"S1-{i:03}" for i in range(120)],
        "ARM": [["Placebo", "Drug 10 mg", "Drug 20 mg"][i % 3] for i in range(120)],
        "SEX": ["F" if i % 2 else "M" for i in range(120)],
        "AGE": [20 + (i * 7) % 60 for i in range(120)],
        "NOTE": [f"note <{i}> & \"quoted\"" if i % 5 == 0 else None for i in range(120)],
    }
)

SPEC: dict[str, Any] = {
    "study": "S1",
    "title": "Demographics <by arm> & listing",
    "data_cutoff": "2025-01-31",
    "parameters": {"Population": "Safety"},
    "sections": [
        {"type": "text", "heading": "About", "body": "Fictional subjects.\n\nA second paragraph."},
        {
            "type": "summary",
            "heading": "Age by arm",
            "dataset": "DM",
            "group_by": ["ARM"],
            "measures": [
                {"label": "n", "measure": "count"},
                {"label": "Mean age", "measure": "mean", "column": "AGE", "decimals": 1},
            ],
            "footnotes": ["n: subjects in the arm."],
        },
        {
            "type": "table",
            "heading": "Listing of subjects",
            "dataset": "DM",
            "columns": ["USUBJID", "ARM", "SEX", "AGE", "NOTE"],
            "sort": [{"column": "USUBJID"}],
        },
        {"type": "chart", "title": "Subjects by sex", "kind": "bar", "dataset": "DM", "x": "SEX", "measure": "count"},
    ],
}


def open_engine(home: Home) -> trialport.Engine:
    """An engine on the home with fast signing-password hashing (the default is slow in a debug build)."""
    config_path = home.path / "config.json"
    config = json.loads(config_path.read_text())
    config["signing"] = {"pbkdf2_iterations": 1000, "max_failed_attempts": 5}
    config_path.write_text(json.dumps(config))
    engine = trialport.Engine(home.path, workers=1)
    engine.add_dataset("S1", "DM", DM, label="Demographics")
    return engine


def squeeze(text: str) -> str:
    """Text without white space: a wrapped cell or a text extractor's spacing does not change what it says."""
    return re.sub(r"\s+", "", text)


def check_pdf(data: bytes, tmp: Path) -> tuple[PdfReader, list[str]]:
    """Checks what every generated PDF must be; returns the reader and each page's text."""
    assert data.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(data))
    pages = [p.extract_text() for p in reader.pages]
    total = len(pages)
    assert total >= 2
    # Page x of y, on every page, in order.
    for i, text in enumerate(pages, start=1):
        assert f"Page {i} of {total}" in text, (i, text[-200:])
    # PDF/A-2b identification in the XMP metadata (parsed as XML, not searched as bytes).
    xmp = reader.trailer["/Root"]["/Metadata"].get_object().get_data()
    root = ET.fromstring(xmp)
    part = [e.text for e in root.iter(f"{PDFAID}part")] + [
        v for e in root.iter() for k, v in e.attrib.items() if k == f"{PDFAID}part"
    ]
    conformance = [e.text for e in root.iter(f"{PDFAID}conformance")] + [
        v for e in root.iter() for k, v in e.attrib.items() if k == f"{PDFAID}conformance"
    ]
    assert part == ["2"], xmp[:400]
    assert conformance == ["B"], xmp[:400]
    # Every font of every page is embedded.
    fonts = 0
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            descriptor = font["/DescendantFonts"][0].get_object()["/FontDescriptor"].get_object()
            assert "/FontFile2" in descriptor or "/FontFile3" in descriptor, font
            fonts += 1
    assert fonts >= total
    # poppler renders every page.
    pdftoppm = shutil.which("pdftoppm")
    assert pdftoppm, "pdftoppm is missing: install poppler-utils (scripts/test-all.sh does)"
    pdf = tmp / "doc.pdf"
    pdf.write_bytes(data)
    done = subprocess.run(
        [pdftoppm, "-r", "30", "-png", str(pdf), str(tmp / "page")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Error" not in done.stderr, done.stderr
    images = sorted(tmp.glob("page-*.png"))
    assert len(images) == total
    assert all(p.stat().st_size > 1000 for p in images)
    return reader, pages


def test_a_signed_report_shows_its_signature_in_pdf_and_html(home: Home, tmp_path: Path) -> None:
    with open_engine(home) as engine:
        engine.set_signing_password(home.admin, PASSWORD)
        jobs = {
            fmt: engine.export_report(
                home.admin, study="S1", report=SPEC, format=fmt, signature={"meaning": "approval", "password": PASSWORD}
            ).wait(60)
            for fmt in ("pdf", "html")
        }
        files = {}
        for fmt, job in jobs.items():
            assert job.state == "succeeded", job.error
            files[fmt] = job.download(artifact=f"report.{fmt}") or b""
            files[fmt + ".manifest"] = job.download(artifact="manifest.json") or b""
    reader, pages = check_pdf(files["pdf"], tmp_path)
    everything = squeeze("".join(pages))
    manifest = json.loads(files["pdf.manifest"])
    (record,) = manifest["signatures"]
    assert record["printed_name"] == "initial admin"
    # The signature manifestation: printed name, meaning, UTC time; and the content hash the manifest records.
    for shown in (record["printed_name"], record["meaning"], record["signed_at"], "Date and time (UTC)"):
        assert squeeze(shown) in everything, shown
    assert manifest["document"]["artifact"] == "report.pdf"
    assert manifest["document"]["content_sha256"] in everything
    assert "notelectronicallysigned" not in everything
    # The title page: study, title, data cut-off, parameters, engine version; the running header on every page.
    assert squeeze("Demographics <by arm> & listing") in squeeze(pages[0])
    for text in ("Study", "S1", "2025-01-31", "Population", "Safety", "trialport"):
        assert squeeze(text) in squeeze(pages[0]), text
    for text in pages:
        assert "Data cut-off: 2025-01-31" in text
    # The table values: every subject, arm, age and note of the listing, and the summary's counts and means.
    for row in DM.iter_rows(named=True):
        assert row["USUBJID"] in everything
        if row["NOTE"] is not None:
            assert squeeze(row["NOTE"]) in everything, row["NOTE"]
    summary = DM.group_by("ARM").agg(pl.len().alias("n"), pl.col("AGE").mean().alias("mean")).sort("ARM")
    for arm, n, mean in summary.iter_rows():
        assert squeeze(f"{arm}{n}{mean:.1f}") in everything, (arm, n, mean)
    assert "n:subjectsinthearm." in everything
    # The HTML page shows the same signature and hash.
    html = files["html"].decode()
    html_manifest = json.loads(files["html.manifest"])
    (html_record,) = html_manifest["signatures"]
    for shown in (html_record["printed_name"], html_record["meaning"], html_record["signed_at"]):
        assert shown in html, shown
    assert html_manifest["document"]["content_sha256"] in html


def test_an_unsigned_dashboard_says_so(home: Home, tmp_path: Path) -> None:
    spec = {
        "study": "S1",
        "title": "Overview",
        "tiles": [{"label": "Subjects", "dataset": "DM", "measure": "count"}],
        "charts": [
            {"title": "Mean age by arm", "kind": "line", "dataset": "DM", "x": "ARM", "measure": "mean", "column": "AGE"}
        ],
        "tables": [{"dataset": "DM", "columns": ["USUBJID", "AGE"], "limit": 200}],
    }
    with open_engine(home) as engine:
        job = engine.export_dashboard(home.admin, study="S1", dashboard=spec, format="pdf").wait(60)
        assert job.state == "succeeded", job.error
        data = job.download(artifact="dashboard.pdf") or b""
        manifest = json.loads(job.download(artifact="manifest.json") or b"")
    _, pages = check_pdf(data, tmp_path)
    everything = squeeze("".join(pages))
    assert "Thisdocumentisnotelectronicallysigned." in everything
    assert manifest["signatures"] == []
    assert manifest["document"]["content_sha256"] in everything
    assert "Subjects120" in everything


def test_a_character_the_fonts_lack_fails_the_job_naming_the_pdfa_rule(home: Home) -> None:
    with open_engine(home) as engine:
        spec = {"study": "S1", "title": "\u5934\u75db", "sections": []}
        job = engine.export_report(home.admin, study="S1", report=spec, format="pdf").wait(60)
    assert job.state == "failed"
    assert job.error is not None
    assert job.error["code"] == "EXP005"
    assert job.error["details"]["reason"] == "pdfa_violation"
    assert job.error["details"]["rule"] == "notdef_glyph"
    assert job.artifacts == []
