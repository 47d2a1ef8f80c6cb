"""Every operator command against a database filled by a real end-to-end run."""

import csv
import io
import json
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal

import pytest

from pipeline import db
from sandbox.generate import generate
from sandbox.harness import wait_for
from tests.conftest import drop_samples
from tests.e2e.conftest import settled_with, summary

pytestmark = pytest.mark.e2e


@pytest.fixture
def ran(stack):
    """Samples (one invoice fails on an unmapped account) and 30 generated invoices, settled."""
    with db.transaction() as cur:
        cur.execute("INSERT INTO gl_account_map VALUES ('6500', '6599')")  # BO-7731 fails
    drop_samples(stack.sftp.export_dir)
    generate(stack.sftp.export_dir, invoices=30, lines=3, vendors=4, prefix="OPS")
    stack.poll()
    s = wait_for(settled_with(33), timeout=90, interval=0.5, what="33 invoices settled")
    # Generated invoices use 6500 on some lines too: count what failed rather than assume.
    assert s["invoices"]["failed"] >= 1
    return stack


def mlc(stack, *args, check=True):
    r = subprocess.run([sys.executable, "-m", "ops.cli", *args], env=stack.env,
                       capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def test_status(ran):
    data = json.loads(mlc(ran, "status", "--json").stdout)
    assert data["files"] == {"parsed": 4}
    assert sum(data["invoices"].values()) == 33
    assert data["queue"] == {"waiting": 0, "unacked": 0}
    assert data["next_poll_at"] > data["last_poll_at"]
    text = mlc(ran, "status").stdout
    assert f"invoices posted{' ' * 5}" in text or "invoices posted" in text
    assert "next poll:" in text and "queue waiting" in text


def test_failed_lists_reasons(ran):
    data = json.loads(mlc(ran, "failed", "--json").stdout)
    bo = next(i for i in data["invoices"] if i["invoice_number"] == "BO-7731")
    assert bo["status"] == "failed" and bo["attempts"] == 0
    assert "line 1: GL account 6599 does not exist in X3 chart CONS" in bo["reason"]
    text = mlc(ran, "failed").stdout
    assert "BO-7731" in text and "VENDOR_ID" in text and "GL account 6599" in text


def test_audit_invoice_and_file(ran):
    text = mlc(ran, "audit", "invoice", "V-1001", "INV-88121").stdout
    assert text.splitlines()[0].startswith("invoice INV-88121 of vendor V-1001: posted as SIV")
    trail = text.split("\n\nX3 calls\n")[0]  # the X3 calls table follows the trail
    stages = [ln.split()[2] for ln in trail.splitlines()[3:] if ln.startswith("20")]
    assert stages == ["vendor_lookup", "gl_validate", "invoice_post"]
    data = json.loads(mlc(ran, "audit", "file", "invoices_20261103101500.csv", "--json").stdout)
    seen = [(e["stage"], e["outcome"]) for e in data["events"]]
    assert seen[0] == ("file_fetch", "ok") and ("file_parse", "ok") in seen
    assert ("gl_validate", "error") in seen and ("invoice_post", "ok") in seen
    assert mlc(ran, "audit", "invoice", "V-1", "nope", check=False).returncode == 1


def test_report_totals_tie_out_to_the_files(ran):
    expected = defaultdict(Decimal)  # (file, currency) -> sum of invoice totals in the file
    for path in ran.sftp.export_dir.glob("invoices_*.csv"):
        seen = set()
        for row in csv.DictReader(path.open()):
            key = (row["vendor_id"], row["invoice_number"])
            if key not in seen:
                seen.add(key)
                expected[(path.name, row["currency"])] += Decimal(
                    row["invoice_total"].replace(",", ""))
    out = mlc(ran, "report", "--since", "2026-01-01", "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    got = {(r["file"].rsplit("/", 1)[1], r["currency"]): Decimal(r["received_total"])
           for r in rows}
    assert got == dict(expected)
    for r in rows:
        parts = sum(Decimal(r[f"{s}_total"]) for s in ("posted", "failed", "needs_review", "open"))
        assert parts == Decimal(r["received_total"])
    table = mlc(ran, "report", "--since", "2026-01-01").stdout
    assert "RECV_TOTAL" in table and "GL account 6599" in table
    assert max(len(line) for line in table.splitlines()) <= 100
    assert "RECEIVED_TOTAL" in mlc(ran, "report", "--since", "2026-01-01", "--wide").stdout


def test_replay_refuses_posted_dry_runs_and_replays_through_celery_call(ran):
    r = mlc(ran, "replay", "--invoice", "V-1001", "INV-88121", check=False)
    assert r.returncode == 1 and "already posted in X3 as SIV" in r.stderr
    failed_before = summary()["invoices"]["failed"]
    dry = mlc(ran, "replay", "--failed", "--dry-run").stdout
    assert dry.startswith(f"would replay {failed_before} invoice(s)")
    assert summary()["invoices"]["failed"] == failed_before  # a dry run changes nothing
    with db.transaction() as cur:
        cur.execute("DELETE FROM gl_account_map")
    call = subprocess.run([sys.executable, "-m", "celery", "-A", "workers", "call", "mlc.replay",
                           "--kwargs", json.dumps({"failed": True, "reason": "mapping fixed"})],
                          env=ran.env, capture_output=True, text=True, timeout=60)
    assert call.returncode == 0, call.stderr
    wait_for(lambda: summary()["invoices"] == {"posted": 33}, timeout=60,
             what="every replayed invoice posted")
    with db.transaction() as cur:
        cur.execute("SELECT detail FROM audit_events WHERE stage = 'replay'")
        replays = [r["detail"] for r in cur.fetchall()]
    assert len(replays) == failed_before
    assert all(d["by"] == "celery call" and d["reason"] == "mapping fixed" for d in replays)
    assert len(ran.sim()["invoices"]) == 33


def test_health_names_what_is_down(stack):
    never = mlc(stack, "health", check=False)
    assert never.returncode == 1 and "DOWN poll" in never.stdout  # beat never polled
    stack.poll()
    wait_for(lambda: summary()["last_successful_poll_at"], timeout=30, what="a successful poll")
    ok = mlc(stack, "health")
    assert [ln.split()[:2] for ln in ok.stdout.splitlines()] == [
        ["ok", "postgres"], ["ok", "migrations"], ["ok", "redis"], ["ok", "sftp"], ["ok", "x3"],
        ["ok", "poll"]]
    stack.sftp.stop()
    down = mlc(stack, "health", check=False)
    assert down.returncode == 1 and "down: sftp" in down.stderr
    assert "DOWN sftp" in down.stdout and "ok   x3" in down.stdout
    broken = dict(stack.env, CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    r = subprocess.run([sys.executable, "-m", "ops.cli", "health", "--local"], env=broken,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "down: redis" in r.stderr


def test_metrics(ran):
    text = mlc(ran, "metrics").stdout
    metrics = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            metrics[name] = float(value)
    s = summary()["invoices"]
    assert metrics['mlc_invoices{status="posted"}'] == s["posted"]
    assert metrics['mlc_invoices{status="failed"}'] == s["failed"]
    assert metrics["mlc_invoices_posted_total"] == s["posted"]
    assert metrics['mlc_files{status="parsed"}'] == 4
    assert metrics["mlc_suppliers_created_total"] == 2 + 4
    assert 0 < metrics['mlc_x3_post_latency_seconds{quantile="0.5"}'] < 5
    assert metrics["mlc_last_poll_timestamp_seconds"] > 1.7e9
    assert metrics["mlc_last_successful_poll_timestamp_seconds"] > 1.7e9
    assert metrics["mlc_poll_errors_total"] == 0
    assert metrics["mlc_retries_total"] == 0  # nothing was retried in this run
