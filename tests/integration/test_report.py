"""`mlc report`: figures that sum, reasons for every rejected row, a table within 100 columns."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import date

import pytest

from ops import reports
from pipeline import db

pytestmark = pytest.mark.integration
PATH = "/exports/stampli/acme-production/outgoing/invoices_20261103101500.csv"


def mlc(*args: str, columns: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def ledger(db_env):
    """One file: USD and EUR invoices (one USD failed), two rows rejected at parse."""
    with db.transaction() as cur:
        cur.execute("INSERT INTO source_files (connection, path, kind, size, mtime, sha256,"
                    " content, status) VALUES ('stampli', %s, 'invoices', 1, 0, 'x', '',"
                    " 'partially_parsed') RETURNING id", (PATH,))
        fid = cur.fetchone()["id"]
        for n, (cur_, total, status, err) in enumerate([
                ("USD", "100.00", "posted", None), ("USD", "250.50", "failed",
                                                    "GL account 6599 does not exist"),
                ("EUR", "80.00", "posted", None)]):
            cur.execute(
                "INSERT INTO invoices (source_file_id, stampli_vendor_id, invoice_number,"
                " status, last_error, x3_document_number, payload, payload_sha256)"
                " VALUES (%s, 'v-1', %s, %s, %s, %s, %s, 'h')",
                (fid, f"n-{n}", status, err, "SIV1" if status == "posted" else None,
                 json.dumps({"vendor_id": "V-1", "invoice_number": f"N-{n}",
                             "currency": cur_, "invoice_total": total})))
        for line, reason in ((7, "not a number: '12,3x'"), (9, "missing")):
            cur.execute("INSERT INTO parse_rejections (source_file_id, vendor_id,"
                        " invoice_number, line_numbers, field, reason) VALUES"
                        " (%s, 'V-2', %s, %s, 'invoice_total', %s)",
                        (fid, f"BAD-{line}", [line], reason))
    return fid


def test_rejected_at_parse_is_counted_once_per_file(ledger):
    with db.transaction() as cur:
        rows = reports.reconciliation(cur, date(2026, 1, 1))
    assert [r["currency"] for r in rows] == ["EUR", "USD"]
    assert sum(r["rejected_at_parse"] for r in rows) == 2


def test_reasons_name_rows_rejected_at_parse(ledger):
    with db.transaction() as cur:
        rows = reports.reconciliation(cur, date(2026, 1, 1))
    reasons = [reason for r in rows for reason in r["reasons"]]
    assert any("GL account 6599" in r for r in reasons)
    assert any("line 7" in r and "invoice_total" in r and "12,3x" in r for r in reasons)
    assert any("line 9" in r and "BAD-9" in r for r in reasons)


def test_table_fits_100_columns_and_wide_shows_everything(ledger):
    r = mlc("report", "--since", "2026-01-01", columns=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(len(ln) for ln in lines) <= 100, "\n" + r.stdout
    assert sum("invoices_20261103101500.csv" in ln for ln in lines[:4]) == 2, r.stdout
    assert "line 7" in r.stdout and "GL account 6599" in r.stdout
    wide = mlc("report", "--since", "2026-01-01", "--wide", columns=250)
    assert wide.returncode == 0, wide.stderr
    assert PATH in wide.stdout and "NEEDS_REVIEW_TOTAL" in wide.stdout


def test_csv_sums_without_double_counting(ledger):
    out = mlc("report", "--since", "2026-01-01", "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sum(int(r["rejected_at_parse"]) for r in rows) == 2
    assert any("line 7" in r["reasons"] for r in rows)
