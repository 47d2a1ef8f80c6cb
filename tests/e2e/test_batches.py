"""Batches with real worker processes (mlc.process_invoices, MLC_INVOICES_PER_TASK invoices of a
file per message): every invoice lands in X3 once; one invoice's trouble stays its own (a lost
answer is retried as its own task while the others of its batch post at once, a refusal fails
that invoice alone, with its reason)."""

from __future__ import annotations

import csv

import pytest

from pipeline import db
from sandbox.generate import generate
from sandbox.harness import wait_for
from tests.e2e.conftest import settled_with, summary
from tests.e2e.test_exactly_once import assert_x3_matches

pytestmark = pytest.mark.e2e


def _trail() -> tuple[list[dict], list[dict]]:
    with db.transaction() as cur:
        cur.execute("SELECT id, status, last_error, payload->>'invoice_number' AS number"
                    " FROM invoices ORDER BY id")
        invoices = cur.fetchall()
        cur.execute("SELECT id, stage, outcome, invoice_id, task_id, attempt, detail"
                    " FROM audit_events WHERE invoice_id IS NOT NULL ORDER BY id")
        return invoices, cur.fetchall()


def _posts(events: list[dict]) -> list[dict]:
    return [e for e in events if e["stage"] == "invoice_post" and e["outcome"] == "ok"]


def test_a_file_posts_in_batches_each_invoice_once(stack):
    expected = generate(stack.sftp.export_dir, invoices=11, lines=2, vendors=3, prefix="BA")
    stack.poll()
    s = wait_for(settled_with(11), timeout=120, interval=0.5, what="11 invoices settled")
    assert s["invoices"] == {"posted": 11}
    state = stack.sim()
    assert_x3_matches(state, expected)
    assert len(state["invoices"]) == 11
    invoices, events = _trail()
    posts = _posts(events)
    assert sorted(e["invoice_id"] for e in posts) == [i["id"] for i in invoices]  # once each
    # 11 invoices at 8 a message: two batches, no retry, no invoice sent on its own.
    assert len({e["task_id"] for e in posts}) == 2
    assert not [e for e in events if e["detail"].get("retry")]
    log = stack.worker.log()
    assert "mlc.process_invoices" in log
    assert "Task mlc.process_invoice[" not in log


def test_a_lost_answer_is_retried_alone_while_the_others_post_at_once(stack):
    # The first create X3 commits (the first invoice's supplier, or its invoice) loses its
    # answer: an unknown outcome, transient. The batch hands that invoice on as its own task.
    expected = generate(stack.sftp.export_dir, invoices=3, lines=1, vendors=3, prefix="BL")
    stack.faults(drop_next_commits=1)
    stack.poll()
    wait_for(settled_with(3), timeout=90, interval=0.5, what="3 invoices settled")
    assert summary()["invoices"] == {"posted": 3}
    state = stack.sim()
    assert_x3_matches(state, expected)  # exactly once: invoices and suppliers
    assert len(state["invoices"]) == 3
    invoices, events = _trail()
    first, *others = invoices
    retries = [e for e in events if e["detail"].get("retry")]
    assert [e["invoice_id"] for e in retries] == [first["id"]], events
    (retry,) = retries
    assert retry["outcome"] == "error" and retry["detail"]["task"] == "mlc.process_invoices"
    assert retry["detail"]["next_attempt"] == 2 and "X3OutcomeUnknown" in retry["detail"]["error"]
    posts = {e["invoice_id"]: e for e in _posts(events)}
    batch = retry["task_id"]
    # The others posted in the batch, before the retried one ran as its own task (attempt 2).
    assert all(posts[o["id"]]["task_id"] == batch for o in others)
    assert posts[first["id"]]["task_id"] != batch and posts[first["id"]]["attempt"] == 2
    assert all(posts[o["id"]]["id"] < posts[first["id"]]["id"] for o in others)
    assert f"Task mlc.process_invoice[{posts[first['id']]['task_id']}]" in stack.worker.log()


def test_a_refused_invoice_fails_with_its_reason_while_the_others_post(stack):
    expected = generate(stack.sftp.export_dir, invoices=3, lines=1, vendors=3, prefix="BR")
    refused = expected[1].number
    path = stack.sftp.export_dir / "invoices_20261110120000.csv"
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if row["invoice_number"] == refused:
            row["gl_account"] = "9999"  # not in X3's chart
    tmp = path.with_name(".rewrite.part")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp.rename(path)
    stack.poll()
    wait_for(settled_with(3), timeout=90, interval=0.5, what="3 invoices settled")
    invoices, events = _trail()
    by_number = {i["number"]: i for i in invoices}
    assert by_number[refused]["status"] == "failed"
    assert "GL account 9999 does not exist in X3" in by_number[refused]["last_error"]
    assert {i["status"] for n, i in by_number.items() if n != refused} == {"posted"}
    state = stack.sim()
    assert sorted(i["BPRVCR"] for i in state["invoices"]) == sorted(
        e.number for e in expected if e.number != refused)
    # One batch settled all three: no retry, the refusal on the refused invoice's row alone.
    assert len({e["task_id"] for e in events if e["stage"] == "invoice_post"}) == 1
    assert not [e for e in events if e["detail"].get("retry")]
