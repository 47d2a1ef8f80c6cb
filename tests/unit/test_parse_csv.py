"""The default CSV layout: samples parse to the right Decimal amounts, bad invoices are rejected
one by one with file line numbers and reasons, the good ones go on."""

import io
from decimal import Decimal
from pathlib import Path

from pipeline.stampli import parse
from pipeline.stampli.schema import Layout

SAMPLES = Path(__file__).resolve().parents[2] / "sandbox" / "data"
HEADER = ("invoice_number,vendor_id,vendor_name,invoice_date,currency,invoice_total,tax_amount,"
          "line_number,line_amount,gl_account,cost_center,approval_status\n")


def parse_text(text: str, layout: Layout | None = None) -> parse.InvoiceFileResult:
    layout = layout or Layout()
    rows = parse.read_csv_rows(io.BytesIO(text.encode()), layout)
    return parse.parse_invoices(rows, layout)


def test_sample_file():
    layout = Layout()
    with open(SAMPLES / "invoices_20261103101500.csv", "rb") as fh:
        # parse_invoices streams: collect while the file is open.
        result = parse.parse_invoices(parse.read_csv_rows(fh, layout), layout).collect()
    assert result.rejections == []
    by_number = {i.header["invoice_number"]: i for i in result.invoices}
    acme = by_number["INV-88121"]
    assert acme.header["invoice_total"] == Decimal("1260.50")  # "1,260.50" with a separator
    assert [ln["amount"] for ln in acme.lines] == [Decimal("800.00"), Decimal("400.00")]
    assert acme.source_lines == (2, 3)
    assert by_number["2026/117"].lines[0]["description"] == 'M8 bolts "grade 10.9"'


def test_unreconciled_invoice_rejected_others_go_on():
    result = parse_text(HEADER
                        + "A1,V1,Vendor,2026-11-01,USD,110.00,10.00,1,90.00,6100,,Approved\n"
                        + "B2,V1,Vendor,2026-11-01,USD,50.00,0,1,50.00,6100,,Approved\n")
    assert [i.header["invoice_number"] for i in result.invoices] == ["B2"]
    (rej,) = result.rejections
    assert rej.invoice_number == "A1" and rej.field == "invoice_total"
    assert rej.line_numbers == (2,)
    assert "lines 90.00 + tax 10.00 = 100.00, header total is 110.00" in rej.reason


def test_header_disagreement_names_fields_and_lines():
    result = parse_text(HEADER
                        + "A1,V1,Vendor,2026-11-01,USD,100,0,1,60,6100,,Approved\n"
                        + "A1,V1,Vendor,2026-11-02,USD,100,0,2,40,6100,,Approved\n")
    (rej,) = result.rejections
    assert rej.field == "invoice_date"
    assert "line 3 differ from line 2" in rej.reason


def test_duplicate_line_number_and_missing_field():
    result = parse_text(HEADER
                        + "A1,V1,Vendor,2026-11-01,USD,100,0,1,60,6100,,Approved\n"
                        + "A1,V1,Vendor,2026-11-01,USD,100,0,1,40,6100,,Approved\n"
                        + "C3,V1,Vendor,2026-11-01,USD,100,0,1,100,,,Approved\n")
    reasons = {r.invoice_number: r for r in result.rejections}
    assert reasons["A1"].field == "line_number" and reasons["A1"].line_numbers == (2, 3)
    assert reasons["C3"].field == "gl_account" and reasons["C3"].line_numbers == (4,)
    assert result.invoices == []


def test_not_approved_rejected_credit_note_kept():
    result = parse_text(HEADER
                        + "A1,V1,Vendor,2026-11-01,USD,100,0,1,100,6100,,Pending\n"
                        + "CN1,V1,Vendor,2026-11-01,USD,-25.00,0,1,-25.00,6100,,Approved\n")
    assert result.rejections[0].field == "approval_status"
    (credit,) = result.invoices
    assert credit.header["document_type"] == "credit_note"
    assert credit.header["invoice_total"] == Decimal("-25.00")


def test_quoted_newline_keeps_line_numbers_right():
    result = parse_text(HEADER
                        + 'A1,V1,"Multi\nline vendor",2026-11-01,USD,100,0,1,100,6100,,Approved\n'
                        + "B1,V1,Vendor,2026-11-01,USD,1,0,1,2,6100,,Approved\n")
    # A name is held on one line by X3: the quoted newline becomes a space.
    assert result.invoices[0].header["vendor_name"] == "Multi line vendor"
    assert result.rejections[0].line_numbers == (4,)


def test_payload_is_json_ready_with_decimal_strings():
    (inv,) = parse_text(HEADER + "A1,V1,V,2026-11-01,USD,\"1,000.10\",0,1,1000.10,6100,,Approved\n"
                        ).invoices
    payload = inv.payload()
    assert payload["invoice_total"] == "1000.10"
    assert payload["invoice_date"] == "2026-11-01"
    assert payload["lines"][0]["quantity"] == "1"
