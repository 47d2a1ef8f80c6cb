"""Figures an operator reads are true: a retry counts in mlc_retries_total and is on the audit
trail before the next attempt; a refused replay is a failed task (Flower), not a success."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ops import metrics
from pipeline import db
from sandbox.generate import generate
from sandbox.harness import wait_for
from tests.e2e.conftest import settled_with

pytestmark = pytest.mark.e2e


def retries_total() -> float:
    for line in metrics.exposition().decode().splitlines():
        if line.startswith("mlc_retries_total "):
            return float(line.split()[1])
    raise AssertionError("no mlc_retries_total in the exposition")


def test_a_retry_is_counted_and_audited_before_attempt_2(stack):
    generate(stack.sftp.export_dir, invoices=1, lines=1, vendors=1, prefix="RT")
    # X3 answers 503 until the invoice's task has given up once: the X3 client's own read
    # retries give up, the task retries later. (A fixed count of 503s is spent by the parse
    # task's best-effort prefetch of the file's codes before the invoice asks anything.) The
    # invoice runs in a batch: its retry is its own mlc.process_invoice, numbered attempt 2.
    stack.faults(error_rate_503=1.0, retry_after=0)
    stack.poll()
    wait_for(_a_retry_recorded, timeout=60, interval=0.2, what="the first retry")
    stack.faults(error_rate_503=0.0)
    wait_for(settled_with(1), timeout=60, interval=0.3, what="the invoice to settle")
    with db.transaction() as cur:
        cur.execute("SELECT id, status FROM invoices")
        (inv,) = cur.fetchall()
        cur.execute("SELECT stage, outcome, attempt, detail FROM audit_events"
                    " WHERE invoice_id = %s ORDER BY at, id", (inv["id"],))
        trail = cur.fetchall()
    assert inv["status"] == "posted", trail
    first_retry_attempt = next(i for i, e in enumerate(trail) if (e["attempt"] or 0) >= 2)
    before = trail[:first_retry_attempt]
    retries = [e for e in before if e["detail"].get("retry")]
    assert retries, f"no retry row before attempt 2: {trail}"
    assert retries[-1]["outcome"] == "error" and "X3Unavailable" in retries[-1]["detail"]["error"]
    assert retries[-1]["detail"]["next_attempt"] == 2
    assert retries_total() >= 1
    r = subprocess.run([sys.executable, "-m", "ops.cli", "audit", "invoice", "RTV-0000",
                        _number(inv["id"])], env=stack.env,
                       capture_output=True, text=True, timeout=60)
    assert "next_attempt=2" in r.stdout, r.stdout + r.stderr


def _a_retry_recorded() -> bool:
    with db.transaction() as cur:
        cur.execute("SELECT 1 FROM audit_events WHERE detail->>'retry' = 'true'")
        return cur.fetchone() is not None


def _number(invoice_id: int) -> str:
    with db.transaction() as cur:
        cur.execute("SELECT payload->>'invoice_number' AS n FROM invoices WHERE id = %s",
                    (invoice_id,))
        return cur.fetchone()["n"]


def test_a_refused_replay_fails_the_task(stack):
    """celery call mlc.replay of a posted invoice: the worker reports the task failed with the
    refusal (what Flower shows), in one log line without a traceback."""
    generate(stack.sftp.export_dir, invoices=1, lines=1, vendors=1, prefix="RF")
    stack.poll()
    wait_for(settled_with(1), timeout=60, interval=0.3, what="the invoice to settle")
    with db.transaction() as cur:
        cur.execute("SELECT id FROM invoices WHERE status = 'posted'")
        (row,) = cur.fetchall()
    result = stack.app.send_task("mlc.replay", kwargs={"invoice_id": row["id"]})
    wait_for(lambda: f"mlc.replay[{result.id}]" in stack.worker.log()
             and "ReplayRefused" in stack.worker.log(), timeout=30,
             what="the worker to report the refused replay")
    log = stack.worker.log()
    lines = [ln for ln in log.splitlines() if result.id in ln and "ReplayRefused" in ln]
    assert lines and "already posted" in lines[0], log[-3000:]
    assert "succeeded" not in " ".join(ln for ln in log.splitlines() if result.id in ln)
