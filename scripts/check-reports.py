#!/usr/bin/env python3
"""Runs `trialport demo` and checks the reports and dashboards it renders with readers trialport did not write.

Every PDF (pypdf, poppler's pdftoppm): "Page x of y" on every page, the PDF/A-2b identification (pdfaid:part 2,
conformance B) in its XMP metadata, every font embedded, every page rendered; the signature manifestation (the
manifest's printed name, meaning and time, and document.content_sha256) on a signed one, "not electronically
signed" on the others. The three report templates as HTML, PDF and XLSX: every row of every table of the workbook
(openpyxl) appears, cell after cell, in the PDF's extracted text and in the HTML page's text (html.parser).

Usage: check-reports.py TRIALPORT_BINARY        (needs pypdf and openpyxl, and pdftoppm on the PATH)
"""

from __future__ import annotations

import datetime as dt
import html.parser
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import openpyxl
from pypdf import PdfReader

PDFAID = "{http://www.aiim.org/pdfa/ns/id/}"
# A number standing alone: a cell's digits never run into the next cell's.
NUMBER = r"(?<![\d.])(-?\d+(?:\.\d+)?)(?![\d.])"


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def spaced(text: str) -> str:
    """Runs of white space as one space: a wrapped cell reads as it was written."""
    return re.sub(r"\s+", " ", text)


def words(text: str) -> str:
    """A pattern for `text`, its words separated by any white space (or none, where a line broke)."""
    return r"\s*".join(re.escape(w) for w in text.split())


def fail(message: str) -> None:
    raise SystemExit(f"check-reports: {message}")


def pdf_text(path: Path, tmp: Path) -> str:
    """Checks one PDF; returns its text, white space collapsed."""
    reader = PdfReader(io.BytesIO(path.read_bytes()))
    pages = [p.extract_text() for p in reader.pages]
    total = len(pages)
    if total < 1:
        fail(f"{path}: no page")
    for i, text in enumerate(pages, start=1):
        if f"Page {i} of {total}" not in text:
            fail(f"{path}: page {i} does not say 'Page {i} of {total}'")
    root = ET.fromstring(reader.trailer["/Root"]["/Metadata"].get_object().get_data())
    ident = {
        name: [e.text for e in root.iter(PDFAID + name)]
        + [v for e in root.iter() for k, v in e.attrib.items() if k == PDFAID + name]
        for name in ("part", "conformance")
    }
    if ident != {"part": ["2"], "conformance": ["B"]}:
        fail(f"{path}: XMP PDF/A identification is {ident}")
    for n, page in enumerate(reader.pages, start=1):
        for font in page["/Resources"]["/Font"].values():
            descriptor = font.get_object()["/DescendantFonts"][0].get_object()["/FontDescriptor"].get_object()
            if "/FontFile2" not in descriptor and "/FontFile3" not in descriptor:
                fail(f"{path}: a font of page {n} is not embedded")
    out = tmp / path.parent.name
    out.mkdir()
    done = subprocess.run(
        ["pdftoppm", "-r", "30", "-png", str(path), str(out / "p")], capture_output=True, text=True, check=False
    )
    if done.returncode != 0 or "Error" in done.stderr:
        fail(f"{path}: pdftoppm failed: {done.stderr}")
    if len(list(out.glob("p-*.png"))) != total:
        fail(f"{path}: pdftoppm rendered {len(list(out.glob('p-*.png')))} of {total} pages")
    return spaced(" ".join(pages))


class Text(html.parser.HTMLParser):
    """The text of an HTML page, outside <style> and <title>."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.skip += tag in ("style", "title")

    def handle_endtag(self, tag: str) -> None:
        self.skip -= tag in ("style", "title")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_text(path: Path) -> str:
    parser = Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return spaced(" ".join(parser.parts))


def row_pattern(row: tuple[Any, ...]) -> tuple[str, list[float]]:
    """A pattern matching a row's cells one after the other, and the numbers it must capture."""
    parts, numbers = [], []
    for cell in row:
        if cell is None:
            continue
        if isinstance(cell, bool):
            parts.append(words(str(cell).lower()))
        elif isinstance(cell, (int, float)):
            parts.append(NUMBER)
            numbers.append(float(cell))
        elif isinstance(cell, dt.datetime):
            parts.append(words(cell.date().isoformat() if cell.time() == dt.time() else cell.isoformat()))
        else:
            parts.append(words(str(cell)))
    return r"\s*".join(parts), numbers


def has_row(text: str, row: tuple[Any, ...]) -> bool:
    """Whether `text` shows the row: its cells in order, each number as written to at most its shown decimals."""
    pattern, numbers = row_pattern(row)
    for m in re.finditer(pattern, text):
        shown = m.groups()
        if all(
            abs(float(s) - n) <= 0.5 * 10 ** -(len(s.split(".")[1]) if "." in s else 0) + 1e-9
            for s, n in zip(shown, numbers)
        ):
            return True
    return False


def check_template(name: str, files: dict[str, Path], spec: dict[str, Any], tmp: Path) -> int:
    """Checks a template's workbook rows against its PDF and HTML; returns the rows checked."""
    tmp.mkdir()
    pdf = pdf_text(files["pdf"], tmp)
    page = html_text(files["html"])
    book = openpyxl.load_workbook(files["xlsx"], read_only=True)
    charts = {s["title"] for s in spec["sections"] if s["type"] == "chart"}
    rows = 0
    for sheet in book.worksheets[1:]:
        values = list(sheet.iter_rows(values_only=True))
        if sheet.title in charts:
            # A chart's sheet holds its points; the pages draw its categories as axis labels.
            for category, _ in values[1:]:
                for where, text in (("PDF", pdf), ("HTML", page)):
                    if not re.search(words(str(category)), text):
                        fail(f"{name}: chart category {category!r} is not in the {where}")
            continue
        for row in values:
            if not any(c is not None for c in row):
                continue
            for where, text in (("PDF", pdf), ("HTML", page)):
                if not has_row(text, row):
                    fail(f"{name}: sheet '{sheet.title}' row {row} is not in the {where}")
            rows += 1
    if rows == 0:
        fail(f"{name}: the workbook has no table rows")
    return rows


def main() -> None:
    if len(sys.argv) != 2:
        fail("usage: check-reports.py TRIALPORT_BINARY")
    if not shutil.which("pdftoppm"):
        fail("pdftoppm is missing: install poppler-utils")
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        done = subprocess.run(
            [binary, "demo", "--out", str(tmp / "tour"), "--json"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            fail(f"the demo failed: {done.stderr[-2000:]}")
        tour = json.loads(done.stdout)
        pdfs = 0
        templates: dict[str, dict[str, Path]] = {}
        renders = tmp / "renders"
        renders.mkdir()
        for job in tour["jobs"]:
            if job["kind"] not in ("report", "dashboard"):
                continue
            paths = {a["name"]: Path(a["path"]) for a in job["artifacts"]}
            main_name = f"{job['kind']}.{job['format']}"
            if job["step"].startswith("template "):
                templates.setdefault(job["step"].split(" ")[1], {})[job["format"]] = paths[main_name]
            if job["format"] != "pdf":
                continue
            text = pdf_text(paths[main_name], renders)
            manifest = json.loads(paths["manifest.json"].read_text())
            text = squeeze(text)
            if manifest["document"]["content_sha256"] not in text:
                fail(f"{job['step']}: the content hash of the manifest is not on the page")
            if manifest["signatures"]:
                for record in manifest["signatures"]:
                    for field in ("printed_name", "meaning", "signed_at"):
                        if squeeze(record[field]) not in text:
                            fail(f"{job['step']}: the signature's {field} is not on the page")
            elif "Thisdocumentisnotelectronicallysigned." not in text:
                fail(f"{job['step']}: an unsigned PDF does not say so")
            pdfs += 1
        if len(templates) != 3 or any(sorted(f) != ["html", "pdf", "xlsx"] for f in templates.values()):
            fail(f"the demo did not render the three templates as HTML, PDF and XLSX: {templates}")
        rows = 0
        for name, files in sorted(templates.items()):
            spec = json.loads((tmp / "tour" / "specs" / f"{name}.json").read_text())
            rows += check_template(name, files, spec, tmp / name)
        print(f"check-reports: {pdfs} PDFs checked (pypdf, pdftoppm), {rows} table rows of 3 templates found in PDF and HTML")


if __name__ == "__main__":
    main()
