"""End to end: real sshd, the X3 simulator as its own process, Redis, Postgres and a real Celery
worker. The samples land in X3 once, every step is audited, a second poll changes nothing."""

import json

import pytest
import requests

from pipeline import db
from sandbox.harness import wait_for
from tests.conftest import drop_samples
from tests.e2e.conftest import X3_PASSWORD, settled_with, summary

pytestmark = pytest.mark.e2e


def test_samples_flow_through_a_real_worker(stack):
    url, app = stack.url, stack.app
    drop_samples(stack.sftp.export_dir)
    app.send_task("mlc.fetch_exports")
    s = wait_for(settled_with(3), timeout=90, what="3 invoices settled")
    assert s["invoices"] == {"posted": 3}
    assert s["files"] == {"parsed": 2}
    assert s["vendors_created"] == 2

    state = requests.get(f"{url}/_sim/state", timeout=5).json()
    docs = sorted((i["BPR"], i["BPRVCR"], i["AMTATI"], i["CUR"]) for i in state["invoices"])
    assert docs == [("ACME01", "INV-88121", "1260.50", "USD"),
                    ("V1002", "2026/117", "4410.00", "EUR"),
                    ("V1003", "BO-7731", "215.35", "USD")]
    lines = {i["BPRVCR"]: [(ln["LIG"], ln["ACC"], ln["AMTNOTLIN"], ln["QTY"], ln["DIE"],
                            ln["CCE"]) for ln in i["BPSINVLIG"]] for i in state["invoices"]}
    assert lines["BO-7731"] == [(1, "6500", "120.00", "20", ["CCT"], ["ADMIN"]),
                                (2, "6500", "80.00", "2", ["CCT"], ["ADMIN"])]
    assert lines["2026/117"] == [(1, "6100", "4410.00", "2000", ["CCT"], ["PLANT2"])]

    with db.transaction() as cur:
        cur.execute("SELECT id, x3_document_number FROM invoices")
        invoices = cur.fetchall()
        cur.execute("SELECT stage, outcome, invoice_id, source_file_id, task_id FROM audit_events")
        events = cur.fetchall()
    for inv in invoices:
        stages = {e["stage"] for e in events if e["invoice_id"] == inv["id"]
                  and e["outcome"] == "ok"}
        assert {"vendor_lookup", "gl_validate", "invoice_post"} <= stages, inv
        assert inv["x3_document_number"] in {i["NUM"] for i in state["invoices"]}
    assert sum(1 for e in events if e["stage"] == "file_fetch" and e["outcome"] == "ok") == 2
    assert sum(1 for e in events if e["stage"] == "file_parse" and e["outcome"] == "ok") == 2
    assert all(e["task_id"] for e in events)

    # A second poll (and a re-upload of the same bytes) posts nothing and creates nothing.
    before = len(events)
    drop_samples(stack.sftp.export_dir)
    app.send_task("mlc.fetch_exports")
    wait_for(lambda: _polls() >= 3, timeout=30, what="the second poll to finish")
    app.send_task("mlc.fetch_exports")
    wait_for(lambda: _polls() >= 4, timeout=30, what="the third poll to finish")
    state2 = requests.get(f"{url}/_sim/state", timeout=5).json()
    assert len(state2["invoices"]) == 3
    assert len(state2["suppliers"]) == len(state["suppliers"])
    assert summary()["invoices"] == {"posted": 3}
    with db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM audit_events WHERE id > %s AND stage IN"
                    " ('invoice_post', 'vendor_create')", (before,))
        assert cur.fetchone()["n"] == 0


def test_no_secret_in_logs_or_audit_rows(stack):
    """Every secret value of the run is looked for in the worker's log and the audit trail."""
    drop_samples(stack.sftp.export_dir)
    stack.app.send_task("mlc.fetch_exports")
    wait_for(settled_with(3), timeout=90, what="3 invoices settled")
    key_body = [ln for ln in stack.sftp.client_key_pem.splitlines() if "PRIVATE" not in ln]
    secrets = [X3_PASSWORD, stack.env["MLC_SECRET_KEYS"], *key_body]
    with db.transaction() as cur:
        cur.execute("SELECT detail::text AS d FROM audit_events UNION ALL"
                    " SELECT detail::text FROM polls UNION ALL"
                    " SELECT coalesce(last_error, '') FROM invoices")
        stored = "\n".join(r["d"] for r in cur.fetchall())
        cur.execute("SELECT settings::text AS s FROM connections")
        stored += "\n".join(r["s"] for r in cur.fetchall())
    log = stack.worker.log()
    assert "mlc.process_invoices" in log  # the log really is the worker's, at DEBUG
    lines = [json.loads(ln) for ln in log.splitlines() if ln.startswith("{")]
    posted = [ln for ln in lines if ln["message"].startswith("posted to X3 as")]
    assert len(posted) == 3  # structured: one JSON object per line, with the work's context
    # The parse task sends batches; each line still names its one invoice.
    assert {ln["task"] for ln in posted} <= {"mlc.process_invoices"}
    assert len({ln["invoice_id"] for ln in posted}) == 3
    assert all(ln["task_id"] and ln["invoice_id"] and ln["vendor_id"] and ln["invoice_number"]
               for ln in posted)
    for secret in secrets:
        assert secret not in log
        assert secret not in stored


def _polls():
    with db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM polls WHERE finished_at IS NOT NULL")
        return cur.fetchone()["n"]
