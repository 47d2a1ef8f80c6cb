"""Issue 12 through a real worker: a proxy in front of the X3 simulator answers the first two
invoice creates with a 503 page echoing the Basic header and the login. The worker retries
(a single task through Celery: retry events, what Flower stores; a batch hands the invoice on as
its own task, with an audit retry row), then posts. No secret may be in the worker's log, the
Celery events of the run, or any database row."""

from __future__ import annotations

import base64
import json
import threading

import pytest

from pipeline import connections, db
from sandbox.harness import wait_for
from tests.conftest import drop_samples
from tests.e2e.conftest import X3_PASSWORD, settled_with, summary
from tests.hostile import hostile_server
from tests.integration.test_x3_hostile_run import every_row, proxy_script

pytestmark = pytest.mark.e2e

LOGIN = base64.b64encode(f"admin:{X3_PASSWORD}".encode()).decode()


@pytest.fixture(params=["8", "1"], ids=["batches", "single"])
def per_task(request, stack_env):
    stack_env["MLC_INVOICES_PER_TASK"] = request.param
    return request.param


def test_a_proxy_echoing_the_login_reaches_no_log_event_or_row(per_task, stack):
    failed = []

    def create(h, seen):
        if len(failed) >= 2:
            h.forward(stack.url, seen)
            return
        failed.append(seen)
        h.reply(503, f"<html><pre>{seen.headers['Authorization']}\n{LOGIN} {X3_PASSWORD}"
                     "</pre></html>", content_type="text/html", headers={"Retry-After": "1"})

    events: list[dict] = []
    with hostile_server() as proxy, stack.app.connection() as conn:
        proxy.answer(proxy_script(stack.url, create))
        with db.transaction() as cur:
            connections.save(cur, "x3", "x3_rest", {"url": proxy.url, "folder": "SEED",
                                                    "username": "admin"},
                             {"password": X3_PASSWORD})
        receiver = stack.app.events.Receiver(conn, handlers={"*": events.append})
        threading.Thread(target=receiver.capture, kwargs={"limit": None, "timeout": None},
                         daemon=True).start()
        drop_samples(stack.sftp.export_dir)
        stack.poll()
        wait_for(settled_with(3), timeout=120, what="3 invoices settled")
        receiver.should_stop = True
    assert summary()["invoices"] == {"posted": 3}
    assert len(failed) == 2 and failed[0].headers["Authorization"] == f"Basic {LOGIN}"
    retried = [e for e in events if e.get("type") == "task-retried"]
    shown = {"worker log": stack.worker.log(), "events": json.dumps(events, default=str),
             "rows": "\n".join(every_row())}
    for where, text in shown.items():
        for secret in (X3_PASSWORD, LOGIN, LOGIN.rstrip("=")):
            assert secret not in text, where
    if per_task == "1":  # Celery's own retry: its event carries the (masked) exception
        assert retried, sorted({e.get("type") for e in events})
        assert any("X3 unavailable (HTTP 503 Service Unavailable)" in str(e.get("exception"))
                   for e in retried), retried
    else:  # handed on by the batch: the audit retry row carries it, masked the same way
        with db.transaction() as cur:
            cur.execute("SELECT detail->>'error' AS error, detail->>'task' AS task"
                        " FROM audit_events WHERE detail->>'retry' = 'true'")
            rows = cur.fetchall()
        # The first 503 meets a batch; the second may meet the invoice's own task.
        assert len(rows) == 2 and "mlc.process_invoices" in {r["task"] for r in rows}, rows
        assert all("X3 unavailable (HTTP 503 Service Unavailable)" in r["error"]
                   for r in rows), rows
