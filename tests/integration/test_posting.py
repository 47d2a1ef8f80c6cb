"""Resolve and post against the X3 simulator and real Postgres, without Celery: what X3 holds
and what the audit trail says, including lost answers and racing posters."""

import threading

import pytest
import requests

from pipeline import db, ledger, posting, vendors
from pipeline.audit import TaskContext
from pipeline.run_once import process_invoice
from pipeline.stampli import poll
from pipeline.x3.errors import X3OutcomeUnknown
from tests.integration.conftest import client, sim_state

pytestmark = pytest.mark.integration
CTX = TaskContext(task_id="test", attempt=1)



def test_samples_land_in_x3_with_the_right_content(parsed, connected):
    c = client()
    for invoice_id in parsed.values():
        assert process_invoice(invoice_id, c, CTX) == "posted"
    state = sim_state(connected["x3"])
    by_doc = {i["BPRVCR"]: i for i in state["invoices"]}
    assert set(by_doc) == {"INV-88121", "2026/117", "BO-7731"}
    acme = by_doc["INV-88121"]
    assert acme["BPR"] == "ACME01"  # matched by tax id to the existing supplier
    assert acme["AMTATI"] == "1260.50" and acme["AMTNOT"] == "1200.00"
    assert [(ln["ACC"], ln["AMTNOTLIN"], ln["CCE"]) for ln in acme["BPSINVLIG"]] == [
        ("6100", "800.00", ["PLANT1"]), ("6300", "400.00", ["PLANT1"])]
    assert by_doc["2026/117"]["BPR"] == "V1002" and by_doc["BO-7731"]["BPR"] == "V1003"
    created = {s["BPSNUM"]: s for s in state["suppliers"]}
    assert created["V1002"]["CRN"] == "DE811234567"
    with db.transaction() as cur:
        cur.execute("SELECT stage, outcome, count(*) AS n FROM audit_events"
                    " WHERE invoice_id IS NOT NULL GROUP BY 1, 2")
        counts = {(r["stage"], r["outcome"]): r["n"] for r in cur.fetchall()}
    assert counts[("invoice_post", "ok")] == 3
    assert counts[("gl_validate", "ok")] == 3
    assert counts[("vendor_create", "ok")] == 2


def test_posted_invoice_is_never_posted_again(parsed, connected):
    c = client()
    invoice_id = parsed["INV-88121"]
    assert process_invoice(invoice_id, c, CTX) == "posted"
    assert posting.post(CTX, invoice_id, c).status == "skipped"
    assert len(sim_state(connected["x3"])["invoices"]) == 1


def test_lost_answer_is_adopted_not_reposted(parsed, connected):
    url, c = connected["x3"], client()
    invoice_id = parsed["BO-7731"]
    vendors.resolve(CTX, invoice_id, c)
    requests.post(f"{url}/_sim/faults", json={"drop_after_commit_rate": 1.0}, timeout=5)
    with pytest.raises(X3OutcomeUnknown):
        posting.post(CTX, invoice_id, c)
    requests.post(f"{url}/_sim/faults", json={"drop_after_commit_rate": 0.0}, timeout=5)
    with db.transaction() as cur:
        cur.execute("SELECT status FROM invoices WHERE id = %s", (invoice_id,))
        assert cur.fetchone()["status"] == "outcome_unknown"
    outcome = posting.post(CTX, invoice_id, c)
    assert outcome.status == "adopted"
    state = sim_state(url)
    assert len(state["invoices"]) == 1 and outcome.document_number == state["invoices"][0]["NUM"]


def test_racing_posters_create_one_invoice(parsed, connected):
    invoice_id = parsed["2026/117"]
    vendors.resolve(CTX, invoice_id, client())
    requests.post(f"{connected['x3']}/_sim/faults", json={"latency_ms": 300}, timeout=5)
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(
        posting.post(CTX, invoice_id, client()).status)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes).count("posted") == 1
    assert len(sim_state(connected["x3"])["invoices"]) == 1


def test_unknown_gl_account_fails_with_a_clear_reason(parsed, connected):
    with db.transaction() as cur:
        cur.execute("INSERT INTO gl_account_map VALUES ('6500', '9999')")
    invoice_id = parsed["BO-7731"]
    assert process_invoice(invoice_id, client(), CTX) == "failed"
    with db.transaction() as cur:
        cur.execute("SELECT status, last_error FROM invoices WHERE id = %s", (invoice_id,))
        row = cur.fetchone()
        cur.execute("SELECT outcome, detail FROM audit_events WHERE stage = 'gl_validate'")
        audit_row = cur.fetchone()
    assert row["status"] == "failed"
    assert "line 1: GL account 9999 does not exist in X3 chart CONS" in row["last_error"]
    assert "line 2: GL account 9999" in row["last_error"]
    assert audit_row["outcome"] == "error"
    assert sim_state(connected["x3"])["invoices"] == []


def test_vendor_created_once_when_two_invoices_race(parsed, connected):
    url = connected["x3"]
    requests.post(f"{url}/_sim/faults", json={"latency_ms": 200}, timeout=5)
    with db.transaction() as cur:
        cur.execute("INSERT INTO invoices (stampli_vendor_id, invoice_number, source_file_id,"
                    " payload, payload_sha256) SELECT stampli_vendor_id, 'bo-extra',"
                    " source_file_id, jsonb_set(payload, '{invoice_number}', '\"BO-EXTRA\"'),"
                    " 'x' FROM invoices WHERE id = %s RETURNING id", (parsed["BO-7731"],))
        extra = cur.fetchone()["id"]
    codes = []
    threads = [threading.Thread(target=lambda i=i: codes.append(vendors.resolve(CTX, i, client())))
               for i in (parsed["BO-7731"], extra)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert codes == ["V1003", "V1003"]
    suppliers = [s for s in sim_state(url)["suppliers"] if s["BPSNUM"] == "V1003"]
    assert len(suppliers) == 1


def _reexport(connected, edit):
    """Upload a changed copy of the sample invoice file and run it through fetch and parse."""
    from tests.conftest import SAMPLES

    text = (SAMPLES / "invoices_20261103101500.csv").read_text()
    target = connected["sftp"].export_dir / "invoices_20261104101500.csv"
    target.write_text(edit(text))
    poll.poll(CTX)
    (file_id,) = poll.poll(CTX).new_file_ids
    return ledger.parse_file(CTX, file_id)


def test_changed_reexport_of_posted_invoice_needs_review_with_the_diff(parsed, connected):
    c = client()
    for invoice_id in parsed.values():
        process_invoice(invoice_id, c, CTX)
    outcome = _reexport(connected, lambda t: t.replace("Toner,2,80.00", "Toner,3,80.00"))
    assert outcome.invoice_ids == []  # nothing to post again
    with db.transaction() as cur:
        cur.execute("SELECT status, review_reason, x3_document_number FROM invoices"
                    " WHERE id = %s", (parsed["BO-7731"],))
        row = cur.fetchone()
        cur.execute("SELECT status FROM invoices WHERE id <> %s", (parsed["BO-7731"],))
        others = {r["status"] for r in cur.fetchall()}
    assert row["status"] == "needs_review" and row["x3_document_number"]
    assert "line 2 quantity '2' -> '3'" in row["review_reason"]
    assert others == {"posted"}  # the identical ones are left alone
    assert len(sim_state(connected["x3"])["invoices"]) == 3


def test_cancelled_after_posting_needs_review(parsed, connected):
    process_invoice(parsed["2026/117"], client(), CTX)
    _reexport(connected, lambda t: t.replace("m.ortiz", "m.ortiz").replace(
        "Approved,2026-11-02,m.ortiz", "Cancelled,2026-11-02,m.ortiz"))
    with db.transaction() as cur:
        cur.execute("SELECT status, review_reason FROM invoices WHERE id = %s",
                    (parsed["2026/117"],))
        row = cur.fetchone()
    assert row["status"] == "needs_review"
    assert row["review_reason"].startswith("cancelled in Stampli after export")
    assert len(sim_state(connected["x3"])["invoices"]) == 1


def test_colliding_vendor_ids_get_distinct_supplier_codes(parsed, connected):
    c = client()
    with db.transaction() as cur:
        for vendor in ("V1003", "v-1003 "):
            cur.execute("INSERT INTO invoices (stampli_vendor_id, invoice_number, source_file_id,"
                        " payload, payload_sha256) SELECT %s, 'x-' || %s, source_file_id,"
                        " jsonb_set(payload, '{vendor_id}', to_jsonb(%s::text)), 'x'"
                        " FROM invoices WHERE id = %s",
                        (vendor.strip().casefold(), vendor, vendor, parsed["BO-7731"]))
    codes = {}
    with db.transaction() as cur:
        cur.execute("SELECT id, payload->>'vendor_id' AS v FROM invoices ORDER BY id")
        rows = cur.fetchall()
    for r in rows:
        codes[r["v"].strip()] = vendors.resolve(CTX, r["id"], c)
    assert codes["V-1003"] == "V1003"
    assert codes["V1003"] != "V1003" and codes["V1003"].startswith("V100")
    assert codes["v-1003"] == codes["V-1003"]  # vendor ids compare like the dedup key


def test_dry_run_posts_nothing_and_records_what_it_would_post(parsed, connected, monkeypatch):
    from pipeline.config import settings

    monkeypatch.setenv("MLC_DRY_RUN", "1")
    settings.cache_clear()
    c = client()
    outcomes = {n: process_invoice(i, c, CTX) for n, i in parsed.items()}
    assert set(outcomes.values()) == {"dry_run"}
    state = sim_state(connected["x3"])
    assert state["invoices"] == [] and [s["BPSNUM"] for s in state["suppliers"]] == ["ACME01"]
    with db.transaction() as cur:
        cur.execute("SELECT invoice_id, detail FROM audit_events WHERE stage = 'invoice_post'"
                    " AND outcome = 'skipped'")
        would = {r["invoice_id"]: r["detail"]["would_post"] for r in cur.fetchall()}
        cur.execute("SELECT count(*) AS n FROM audit_events WHERE stage = 'vendor_create'"
                    " AND detail->>'dry_run' = 'true'")
        assert cur.fetchone()["n"] == 2
        cur.execute("SELECT count(*) AS n FROM vendor_links WHERE matched_by = 'created'")
        assert cur.fetchone()["n"] == 0
    acme = would[parsed["INV-88121"]]
    assert acme["supplier"] == "ACME01" and acme["total"] == "1260.50"
    assert [ln["account"] for ln in acme["lines"]] == ["6100", "6300"]
    assert would[parsed["BO-7731"]]["supplier"] == "V1003"

    monkeypatch.setenv("MLC_DRY_RUN", "0")
    settings.cache_clear()
    assert {process_invoice(i, c, CTX) for i in parsed.values()} == {"posted"}
    state = sim_state(connected["x3"])
    assert len(state["invoices"]) == 3 and len(state["suppliers"]) == 3


def test_credit_note_posted_as_a_credit_note(connected):
    export = connected["sftp"].export_dir
    (export / "invoices_20261106000000.csv").write_text(
        "invoice_number,vendor_id,vendor_name,invoice_date,currency,invoice_total,tax_amount,"
        "line_number,line_amount,gl_account,cost_center,approval_status\n"
        "CN-9,V-1001,Acme Industrial Supply,2026-11-05,USD,-105.00,-5.00,1,-100.00,6100,"
        "CC-PLANT1,Approved\n")
    poll.poll(CTX)
    (file_id,) = poll.poll(CTX).new_file_ids
    (invoice_id,) = ledger.parse_file(CTX, file_id).invoice_ids
    assert process_invoice(invoice_id, client(), CTX) == "posted"
    (doc,) = sim_state(connected["x3"])["invoices"]
    assert doc["INVTYP"] == "CRN" and doc["BPRVCR"] == "CN-9"
    assert doc["AMTATI"] == "105.00" and doc["BPSINVLIG"][0]["AMTNOTLIN"] == "100.00"
