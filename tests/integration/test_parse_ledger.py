"""The ledger stores what the parser streams (real Postgres, no Celery): XML like CSV, rejections
with their lines, a refused file leaves nothing behind, a cancelled re-export of a posted invoice
is flagged for a person."""

import hashlib
import io
import json
from pathlib import Path

import pytest

from pipeline import db, ledger
from pipeline.audit import TaskContext
from sandbox import writer

pytestmark = pytest.mark.integration
CTX = TaskContext(task_id="test", attempt=1)
CORPUS = Path(__file__).resolve().parents[1] / "unit" / "corpus"


def add_file(path: str, kind: str, content: bytes) -> int:
    with db.transaction() as cur:
        cur.execute(
            "INSERT INTO source_files (connection, path, kind, size, mtime, sha256, content)"
            " VALUES ('stampli', %s, %s, %s, 0, %s, %s) RETURNING id",
            (path, kind, len(content), hashlib.sha256(content).hexdigest(), content))
        return cur.fetchone()["id"]


def one(sql: str, *args: object) -> dict:
    with db.transaction() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def all_rows(sql: str, *args: object) -> list[dict]:
    with db.transaction() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def test_xml_and_csv_exports_store_the_same_invoices(db_env):
    invoices = list(writer.synthetic_invoices(30, seed=11))
    xml, text = io.BytesIO(), io.StringIO(newline="")
    writer.write_invoices_xml(invoices, xml)
    writer.write_invoices_csv(invoices, text, grouped=True)

    outcome = ledger.parse_file(CTX, add_file("/export/invoices_1.xml", "invoices",
                                              xml.getvalue()))
    assert outcome.status == "parsed" and outcome.accepted == len(invoices)
    stored = {r["invoice_number"]: r["payload"] for r in all_rows(
        "SELECT invoice_number, payload FROM invoices ORDER BY id")}
    lines = one("SELECT count(*) AS n FROM invoice_lines")["n"]
    assert lines == 30

    # The same invoices as CSV: identical payloads, so nothing changes (no re-post, no review).
    outcome = ledger.parse_file(CTX, add_file("/export/invoices_2.csv", "invoices",
                                              text.getvalue().encode()))
    assert outcome.status == "parsed" and outcome.invoice_ids == []
    again = {r["invoice_number"]: r["payload"] for r in all_rows(
        "SELECT invoice_number, payload FROM invoices ORDER BY id")}
    assert again == stored
    skipped = one("SELECT count(*) AS n FROM audit_events WHERE stage = 'file_parse'"
                  " AND outcome = 'skipped'")["n"]
    assert skipped == len(invoices)


def test_rejections_are_stored_with_their_lines_and_the_rest_goes_on(db_env):
    content = (CORPUS / "xml_rejections.xml").read_bytes()
    file_id = add_file("/export/invoices_3.xml", "invoices", content)
    outcome = ledger.parse_file(CTX, file_id)
    assert (outcome.status, outcome.accepted, outcome.rejected) == ("partially_parsed", 2, 7)
    f = one("SELECT * FROM source_files WHERE id = %s", file_id)
    assert (f["rows_total"], f["invoices_accepted"], f["invoices_rejected"]) == (11, 2, 7)
    assert f["rows_rejected"] == 9  # XR-1 and XR-2 name two lines each, five name one
    rejected = {r["invoice_number"]: r for r in all_rows(
        "SELECT * FROM parse_rejections WHERE source_file_id = %s", file_id)}
    assert rejected["XR-1"]["line_numbers"] == [12, 17]
    assert rejected["XR-1"]["field"] == "invoice_total"
    assert rejected["XR-2"]["line_numbers"] == [33, 38]
    # XR-9 is Cancelled and unknown: nothing to post, nothing stored.
    numbers = [r["invoice_number"] for r in all_rows("SELECT invoice_number FROM invoices")]
    assert numbers == ["xr-5"]
    assert one("SELECT payload FROM invoices")["payload"]["document_type"] == "credit_note"


def test_a_refused_file_leaves_nothing_behind(db_env):
    file_id = add_file("/export/invoices_4.xml", "invoices",
                       (CORPUS / "xml_billion_laughs.xml").read_bytes())
    outcome = ledger.parse_file(CTX, file_id)
    assert outcome.status == "rejected"
    f = one("SELECT status, error FROM source_files WHERE id = %s", file_id)
    assert f["status"] == "rejected" and "DTD" in f["error"]
    assert one("SELECT count(*) AS n FROM invoices")["n"] == 0
    event = one("SELECT detail FROM audit_events WHERE stage = 'file_parse'"
                " AND source_file_id = %s", file_id)
    assert "DTD" in json.dumps(event["detail"])


def test_cancelled_after_posting_is_flagged_for_review(db_env):
    def export(status: str) -> bytes:
        inv = next(iter(writer.synthetic_invoices(2, seed=3)))
        inv["approval_status"] = status
        out = io.BytesIO()
        writer.write_invoices_xml([inv], out)
        return out.getvalue()

    ledger.parse_file(CTX, add_file("/export/invoices_5.xml", "invoices", export("Approved")))
    with db.transaction() as cur:
        cur.execute("UPDATE invoices SET status = 'posted'")
    ledger.parse_file(CTX, add_file("/export/invoices_6.xml", "invoices", export("Cancelled")))
    row = one("SELECT status, review_reason FROM invoices")
    assert row == {"status": "needs_review", "review_reason":
                   "cancelled in Stampli after export: approval_status 'Approved' -> 'Cancelled'"}


def test_vendor_xml_is_upserted(db_env):
    file_id = add_file("/export/vendors_1.xml", "vendors", (CORPUS / "vendors.xml").read_bytes())
    outcome = ledger.parse_file(CTX, file_id)
    assert (outcome.status, outcome.accepted, outcome.rejected) == ("partially_parsed", 1, 1)
    assert [r["name"] for r in all_rows("SELECT name FROM stampli_vendors")] == ["Acme & Sons"]


HOSTILE_HEADER = ("invoice_number,vendor_id,vendor_name,invoice_date,currency,invoice_total,"
                  "line_number,line_amount,gl_account,approval_status\n")


def _row(number: str, total: str = "100.00", *, vendor: str = "V-1", date: str = "2026-11-01",
         line: str = "1", amount: str | None = None, name: str = "Acme") -> str:
    return (f"{number},{vendor},{name},{date},USD,{total},{line},{amount or total},6100,"
            "Approved\n")


def test_a_hostile_export_stores_its_good_invoices_and_names_every_refusal(db_env, monkeypatch):
    from pipeline.config import settings

    monkeypatch.setenv("MLC_MAX_LINE_KB", "1")
    settings.cache_clear()
    ledger.layout.cache_clear()
    content = (HOSTILE_HEADER
               + _row("OK-1")                                   # line 2
               + _row("H-DATE", date="9999-12-31")               # 3
               + _row("H-\u200b1")                               # 4: zero-width space
               + _row("H-DIGIT", line="\u0661")                  # 5: arabic-indic one
               + _row("H-LONG", name="x" * 3000)                 # 6: row over 1 KB
               + "," * 5000 + "\n"                               # 7: 50 MB of commas, small
               + _row("H-ZERO", total="-0.00")                   # 8
               + _row("H-NUMBER-" + "9" * 30)                    # 9: over X3's 30
               + _row("OK-\uff12", total="50.00", vendor="V-2")  # 10: OK-2 in full width
               ).encode()
    file_id = add_file("/export/invoices_hostile.csv", "invoices", content)
    outcome = ledger.parse_file(CTX, file_id)
    assert (outcome.status, outcome.accepted, outcome.rejected) == ("partially_parsed", 2, 7)
    stored = all_rows("SELECT stampli_vendor_id, invoice_number, payload FROM invoices"
                      " ORDER BY id")
    assert [(r["stampli_vendor_id"], r["invoice_number"]) for r in stored] == [
        ("v-1", "ok-1"), ("v-2", "ok-2")]
    assert stored[1]["payload"]["invoice_number"] == "OK-2"  # NFKC: what X3 will receive
    rejected = [(r["line_numbers"], r["field"], r["reason"]) for r in all_rows(
        "SELECT * FROM parse_rejections WHERE source_file_id = %s ORDER BY id", file_id)]
    window = settings().date_years_back
    assert [(lines, field) for lines, field, _ in rejected] == [
        ([3], "invoice_date"), ([4], "invoice_number"), ([5], "line_number"), ([6], None),
        ([7], None), ([8], "invoice_total"), ([9], "invoice_number")]
    reasons = [reason for _, _, reason in rejected]
    assert "9999-12-31 is outside the accepted window" in reasons[0] and window == 10
    assert "U+200B ZERO WIDTH SPACE" in reasons[1]
    assert "not a whole number in ASCII digits only" in reasons[2]
    assert "(line 6): row longer than 1 KB (MLC_MAX_LINE_KB)" in reasons[3]
    assert reasons[4] == "line 7: row longer than 1 KB (MLC_MAX_LINE_KB)"
    assert "a zero total is refused as a zero invoice" in reasons[5]
    assert "longer than 30 characters, the X3 limit" in reasons[6]
    f = one("SELECT * FROM source_files WHERE id = %s", file_id)
    assert (f["rows_total"], f["invoices_accepted"], f["invoices_rejected"]) == (9, 2, 7)


def test_an_xml_export_with_a_huge_attribute_is_refused_quickly_with_its_line(db_env):
    content = (b'<?xml version="1.0"?>\n<StampliExport type="invoices">\n<Note a="'
               + b"a" * (5 << 20) + b'"/>\n</StampliExport>\n')
    file_id = add_file("/export/invoices_attr.xml", "invoices", content)
    outcome = ledger.parse_file(CTX, file_id)
    assert outcome.status == "rejected"
    f = one("SELECT status, error FROM source_files WHERE id = %s", file_id)
    assert f["error"] == ("an XML tag, attribute, comment or processing instruction longer than"
                          " 16 KB (MLC_MAX_FIELD_KB) at line 3")
    assert one("SELECT count(*) AS n FROM invoices")["n"] == 0


def test_a_file_the_parser_trips_on_is_rejected_not_left_for_every_poll(db_env, monkeypatch):
    from pipeline.stampli import parse

    def broken(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(parse, "parse_invoices", broken)
    file_id = add_file("/export/invoices_trip.csv", "invoices", b"invoice_number\n1\n")
    assert ledger.parse_file(CTX, file_id).status == "rejected"
    f = one("SELECT status, error FROM source_files WHERE id = %s", file_id)
    assert f["error"] == "the parser failed: RecursionError: maximum recursion depth exceeded"
