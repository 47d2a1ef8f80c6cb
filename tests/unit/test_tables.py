"""What the CLI prints and writes: names from exports and X3 answers never drive a terminal or
a spreadsheet."""

import csv
import io

import pytest

from ops import tables


def test_tables_escape_control_characters_from_names():
    rows = [{"file": "invoices_\x1b[2J\x1b[31mred.csv", "vendor_id": "V-1\nFAKE ROW",
             "invoice_number": "INV\u202e7-\r", "reason": "ok\tfine"}]
    out = tables.table(rows, ["file", "vendor_id", "invoice_number", "reason"], width=300)
    assert "\x1b" not in out and "\u202e" not in out and "\r" not in out and "\t" not in out
    assert len(out.splitlines()) == 3  # header, rule, one row: no line injected
    assert "invoices_\\x1b[2J\\x1b[31mred.csv" in out
    assert "V-1\\nFAKE ROW" in out and "INV\\u202e7-\\r" in out


def test_safe_leaves_printable_text_alone():
    assert tables.safe("Café Müller, 12 €") == "Café Müller, 12 €"
    assert tables.safe("a\x00b\x7fc\u200bd") == "a\\x00b\\x7fc\\u200bd"


@pytest.mark.parametrize(("cell", "written"), [
    ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"),
    ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
    ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
    ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
    ("\t=1+1", "'\t=1+1"),
    ("\r=1+1", "'\r=1+1"),
    ("  =1+1", "'  =1+1"),
    ("＝1+1", "'＝1+1"),
    ("-25.00", "-25.00"),  # a plain negative amount stays a number
    ("+3", "+3"),
    ("-1234.5", "-1234.5"),
    ("INV-1", "INV-1"),
    ("", ""),
])
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(cell, written):
    text = tables.to_csv([{"a": cell}], ["a"])
    assert list(csv.reader(io.StringIO(text))) == [["a"], [written]]


def test_csv_neutralises_a_list_starting_with_a_formula():
    text = tables.to_csv([{"documents": ["=1+1", "DOC-2"]}], ["documents"])
    assert list(csv.reader(io.StringIO(text)))[1] == ["'=1+1, DOC-2"]
