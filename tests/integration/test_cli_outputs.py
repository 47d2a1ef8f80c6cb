"""What `mlc` prints and exits with when names and answers are hostile (issue 12): replay's
file selection takes names literally, tables escape controls, the CSV report neutralises
formulas, run-once fails when the host key is refused."""

import csv
import hashlib
import io
import json

import pytest

from ops import cli
from pipeline import connections, db

pytestmark = pytest.mark.integration


def add_file(path: str) -> int:
    with db.transaction() as cur:
        cur.execute(
            "INSERT INTO source_files (connection, path, kind, size, mtime, sha256, content)"
            " VALUES ('stampli', %s, 'invoices', 1, 0, %s, 'x') RETURNING id",
            (path, hashlib.sha256(path.encode()).hexdigest()))
        return cur.fetchone()["id"]


def add_invoice(file_id: int, vendor: str, number: str, status: str = "failed",
                document: str | None = None, error: str | None = None) -> None:
    payload = {"vendor_id": vendor, "invoice_number": number, "currency": "USD",
               "invoice_total": "-25.00"}
    with db.transaction() as cur:
        cur.execute(
            "INSERT INTO invoices (stampli_vendor_id, invoice_number, source_file_id, payload,"
            " payload_sha256, status, x3_document_number, last_error)"
            " VALUES (%s,%s,%s,%s,'x',%s,%s,%s)",
            (vendor.casefold(), number.casefold(), file_id, json.dumps(payload), status,
             document, error))


def test_replay_file_takes_percent_and_underscore_literally(db_env, capsys):
    add_invoice(add_file("/export/invoices_1.csv"), "V-1", "A-1")
    add_invoice(add_file("/export/invoicesX1.csv"), "V-1", "A-2")
    assert cli.main(["replay", "--file", "%", "--dry-run"]) == 1
    assert "no file named %" in capsys.readouterr().err
    assert cli.main(["replay", "--file", "invoices_1.csv", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would replay 1 invoice(s)" in out and "A-1" in out and "A-2" not in out
    add_invoice(add_file("/export/%"), "V-1", "A-3")
    assert cli.main(["replay", "--file", "%", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would replay 1 invoice(s)" in out and "A-3" in out
    assert cli.main(["audit", "file", "_nvoices_1.csv"]) == 1  # same lookup for audit


def test_failed_and_replay_print_hostile_names_escaped(db_env, capsys):
    file_id = add_file("/export/invoices_\x1b[2J.csv")
    add_invoice(file_id, "V-\x1b[31m1", "INV\n2", error="X3 said \x1b]0;pwned\x07")
    with db.transaction() as cur:
        cur.execute("INSERT INTO parse_rejections (source_file_id, vendor_id, invoice_number,"
                    " line_numbers, field, reason) VALUES (%s, 'V\u202e1', 'N\r1', '{3}',"
                    " 'vendor_name', 'bad\x1b[0m')", (file_id,))
    assert cli.main(["failed"]) == 0
    assert cli.main(["replay", "--failed", "--dry-run"]) == 0
    assert cli.main(["audit", "file", "invoices_\x1b[2J.csv"]) == 0
    out = capsys.readouterr().out
    for raw in ("\x1b", "\u202e", "\r", "\x07"):
        assert raw not in out
    assert "V-\\x1b[31m1" in out and "INV\\n2" in out and "V\\u202e1" in out


def test_report_csv_neutralises_formulas_and_keeps_negative_totals(db_env, capsys):
    file_id = add_file("/export/=cmd|' /C calc'!A0.csv")
    add_invoice(file_id, "V-1", "A-1", status="posted", document='=HYPERLINK("http://x","y")')
    assert cli.main(["report", "--since", "2000-01-01", "--format", "csv"]) == 0
    (row,) = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert row["file"] == "/export/=cmd|' /C calc'!A0.csv"  # starts with "/": nothing to run
    assert row["documents"] == "'=HYPERLINK(\"http://x\",\"y\")"
    assert row["received_total"] == "-25.00" and row["posted_total"] == "-25.00"


def test_run_once_exits_non_zero_when_the_host_key_is_refused(connected, capsys):
    from sandbox.sftp import _keygen

    other = connected["sftp"].state_dir / "other_key"
    _keygen(other)
    pinned = " ".join((other.parent / "other_key.pub").read_text().split()[:2])
    with db.transaction() as cur:
        conn = connections.load(cur, "stampli")
        connections.save(cur, "stampli", conn.kind, {**conn.settings, "host_key": pinned},
                         conn.secret)
    assert cli.main(["run-once"]) != 0
    err = capsys.readouterr().err
    assert "refusing to connect" in err and "\n" == err[-1] and err.count("\n") == 1


def test_status_escapes_the_oldest_unsettled_invoice_names(db_env, capsys):
    add_invoice(add_file("/export/invoices_s.csv"), "V-\x1b[2J", "INV\u202e9", status="received")
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "v-\\x1b[2j" in out  # the key
