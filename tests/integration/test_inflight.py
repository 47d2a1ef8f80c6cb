"""A create X3 commits after its client gave up must not become two invoices: the outcome stays
unknown until a look-up finds it (adopted) or the in-flight window has passed (created again).
Real Postgres and the X3 simulator with its slow-commit fault; no Celery."""

import pytest
import requests

from pipeline import db, posting, vendors
from pipeline.audit import TaskContext
from pipeline.config import settings
from pipeline.x3.errors import X3CreateInFlight, X3OutcomeUnknown
from sandbox.harness import wait_for
from tests.integration.conftest import client, sim_state

pytestmark = pytest.mark.integration
CTX = TaskContext(task_id="test", attempt=1)


@pytest.fixture
def slow_x3(monkeypatch, connected):
    """X3 timeout 1 s (deadline 2 s), in-flight window 3 s; the next create commits after 2 s."""
    monkeypatch.setenv("MLC_X3_TIMEOUT", "1")
    monkeypatch.setenv("MLC_X3_INFLIGHT_WINDOW", "3")
    monkeypatch.setenv("MLC_X3_DEADLINE", "2")
    settings.cache_clear()
    yield connected["x3"]
    settings.cache_clear()


def _slow_next(url, n=1, ms=2000):
    requests.post(f"{url}/_sim/faults", json={"slow_next_commits": n, "slow_commit_ms": ms},
                  timeout=5).raise_for_status()


def _row(invoice_id):
    with db.transaction() as cur:
        cur.execute("SELECT status, attempts, tries, attempt_started_at, x3_document_number,"
                    " last_error FROM invoices WHERE id = %s", (invoice_id,))
        return cur.fetchone()


def _audit(invoice_id):
    with db.transaction() as cur:
        cur.execute("SELECT stage, outcome, detail FROM audit_events WHERE invoice_id = %s"
                    " ORDER BY id", (invoice_id,))
        return cur.fetchall()


def _post_unanswered(invoice_id, c, slow=None):
    """Resolve the vendor, then post: the create gets no answer (the caller's client loses it,
    or the simulator at `slow` commits it after the client's timeout)."""
    vendors.resolve(CTX, invoice_id, c)
    if slow:
        _slow_next(slow)
    with pytest.raises(X3OutcomeUnknown):
        posting.post(CTX, invoice_id, c)


def _invoices(url, number):
    return [i for i in sim_state(url)["invoices"] if i["BPRVCR"] == number]


def test_slow_commit_is_adopted_never_created_twice(parsed, slow_x3):
    url, c = slow_x3, client()
    invoice_id = parsed["BO-7731"]
    _post_unanswered(invoice_id, c, slow=url)
    row = _row(invoice_id)
    assert row["status"] == "outcome_unknown" and row["attempt_started_at"] is not None
    # The retry comes before X3 committed: not found, and no second create inside the window.
    with pytest.raises(X3CreateInFlight) as waiting:
        posting.post(CTX, invoice_id, c)
    assert 0 < waiting.value.retry_after <= 3.5
    assert "may still commit" in str(waiting.value)
    assert _invoices(url, "BO-7731") == []
    wait_for(lambda: _invoices(url, "BO-7731"), timeout=10, interval=0.1,
             what="the slow create committed")
    outcome = posting.post(CTX, invoice_id, c)
    assert outcome.status == "adopted"
    assert len(_invoices(url, "BO-7731")) == 1
    assert sim_state(url)["stats"]["creates"]["BPSINVOICE"] == 1
    row = _row(invoice_id)
    assert row["status"] == "posted" and row["attempt_started_at"] is None
    assert row["x3_document_number"] == outcome.document_number
    adopted = [a["detail"] for a in _audit(invoice_id)
               if a["stage"] == "invoice_post" and a["outcome"] == "ok"]
    assert adopted[-1]["adopted"] is True and adopted[-1]["attempt_started_at"]


class _LosesFirstCreate:
    """A client whose first invoice create never reaches X3 but reports an unknown outcome (a
    request X3 dropped before committing): nothing will ever appear."""

    def __init__(self, inner):
        self.inner, self.lost = inner, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def create_invoice(self, invoice):
        if not self.lost:
            self.lost = True
            raise X3OutcomeUnknown("BPSINVOICE create sent, no answer within the timeout")
        return self.inner.create_invoice(invoice)


def test_not_found_after_the_window_is_created_once(parsed, slow_x3):
    url = slow_x3
    c = _LosesFirstCreate(client())
    invoice_id = parsed["BO-7731"]
    _post_unanswered(invoice_id, c)
    with pytest.raises(X3CreateInFlight):
        posting.post(CTX, invoice_id, c)
    with db.transaction() as cur:  # the window (3 s) has passed
        cur.execute("UPDATE invoices SET attempt_started_at = now() - interval '4 seconds'"
                    " WHERE id = %s", (invoice_id,))
    outcome = posting.post(CTX, invoice_id, c)
    assert outcome.status == "posted"
    assert len(_invoices(url, "BO-7731")) == 1
    settled = [a["detail"] for a in _audit(invoice_id) if a["detail"].get("settled")]
    assert settled and settled[0]["settled"] == "not in X3"
    assert _row(invoice_id)["attempts"] == 2


def test_lookup_comes_before_checks_that_could_fail_the_invoice(parsed, connected):
    """An invoice already in X3 is never marked failed because its mapping, route or vendor
    went wrong after the create was sent."""
    url, c = connected["x3"], client()
    invoice_id = parsed["BO-7731"]
    vendors.resolve(CTX, invoice_id, c)
    requests.post(f"{url}/_sim/faults", json={"drop_next_commits": 1}, timeout=5)
    with pytest.raises(X3OutcomeUnknown):
        posting.post(CTX, invoice_id, c)
    with db.transaction() as cur:
        cur.execute("INSERT INTO gl_account_map VALUES ('6500', '9999')")  # unknown to X3
        cur.execute("INSERT INTO entity_routes VALUES ('', 'NOPE', 'NOPE')")
        cur.execute("DELETE FROM vendor_links")
    assert vendors.resolve(CTX, invoice_id, c) is not None
    outcome = posting.post(CTX, invoice_id, c)
    assert outcome.status == "adopted"
    assert _row(invoice_id)["status"] == "posted"
    assert len(_invoices(url, "BO-7731")) == 1


def test_out_of_retries_with_an_unknown_outcome_is_never_failed(parsed, slow_x3):
    url, c = slow_x3, client()
    invoice_id = parsed["BO-7731"]
    _post_unanswered(invoice_id, c, slow=url)
    posting.fail(CTX, invoice_id, "X3OutcomeUnknown: retries exhausted")
    row = _row(invoice_id)
    assert row["status"] == "outcome_unknown"  # it may be in X3: a look-up settles it
    last = _audit(invoice_id)[-1]
    assert last["outcome"] == "error" and last["detail"]["outcome_unknown"] is True
    assert last["detail"]["terminal"] is False


def test_tries_are_counted_in_the_row(parsed, connected):
    invoice_id = parsed["BO-7731"]
    assert [posting.count_try(invoice_id) for _ in range(3)] == [1, 2, 3]
    assert _row(invoice_id)["tries"] == 3


def test_every_x3_call_for_an_invoice_leaves_an_attempt_record(parsed, connected):
    """Look-ups, creates and their retries: one record each, shown by mlc audit invoice."""
    import json
    import os
    import subprocess
    import sys

    from pipeline.run_once import process_invoice

    url = connected["x3"]
    invoice_id = parsed["BO-7731"]
    # The first supplier look-up meets one 503 (retried inside the client).
    requests.post(f"{url}/_sim/faults", json={"next_errors": [503]}, timeout=5)
    assert process_invoice(invoice_id, client(), CTX) == "posted"
    with db.transaction() as cur:
        cur.execute("SELECT call, try, outcome, http_status, error, duration_ms FROM x3_attempts"
                    " WHERE invoice_id = %s ORDER BY id", (invoice_id,))
        calls = cur.fetchall()
    names = [c["call"] for c in calls]
    assert names[0] == names[1] and names[0].startswith("find_supplier")
    assert (calls[0]["try"], calls[0]["outcome"], calls[0]["http_status"]) == (1, "error", 503)
    assert (calls[1]["try"], calls[1]["outcome"]) == (2, "ok")
    assert "create_supplier" in names and names[-1] == "create_invoice"
    assert calls[-1]["outcome"] == "ok" and calls[-1]["http_status"] == 201
    assert all(c["duration_ms"] >= 0 for c in calls)
    out = subprocess.run([sys.executable, "-m", "ops.cli", "audit", "invoice", "V-1003",
                          "BO-7731", "--json"], capture_output=True, text=True, timeout=60,
                         env=os.environ.copy(), check=True).stdout
    shown = json.loads(out)["x3_calls"]
    assert [c["call"] for c in shown] == names


def test_run_once_reports_an_unknown_outcome_and_goes_on(parsed, slow_x3):
    """Without Celery there is no retry: the invoice stays outcome_unknown (never failed),
    the next invoices of the run are still posted."""
    from pipeline.run_once import process_invoice

    url, c = slow_x3, client()
    first, second = parsed["BO-7731"], parsed["INV-88121"]
    vendors.resolve(CTX, first, c)
    _slow_next(url)
    assert process_invoice(first, c, CTX) == "outcome_unknown"
    assert process_invoice(first, c, CTX) == "outcome_unknown"  # inside the window
    assert process_invoice(second, c, CTX) == "posted"
    assert _row(first)["status"] == "outcome_unknown"


def test_reexport_while_unknown_goes_to_review_once_settled(parsed, slow_x3):
    """A changed re-export lands while the outcome is unknown: the row keeps being settled by
    look-ups (never created again with the old content), then a person decides."""
    url = slow_x3
    c = _LosesFirstCreate(client())
    invoice_id = parsed["BO-7731"]
    _post_unanswered(invoice_id, c)
    with db.transaction() as cur:
        cur.execute("UPDATE invoices SET review_reason = 'changed re-export',"
                    " attempt_started_at = now() - interval '4 seconds' WHERE id = %s",
                    (invoice_id,))
    outcome = posting.post(CTX, invoice_id, c)
    assert outcome.status == "skipped"
    assert _row(invoice_id)["status"] == "needs_review"
    assert _invoices(url, "BO-7731") == []


def test_text_cut_to_fit_x3_is_named_in_the_audit_trail(parsed, connected):
    from pipeline.run_once import process_invoice

    invoice_id = parsed["BO-7731"]
    long = "Quarterly maintenance of the packaging line 4"
    with db.transaction() as cur:
        cur.execute("UPDATE invoices SET payload = jsonb_set(payload, '{lines,0,description}',"
                    " to_jsonb(%s::text)) WHERE id = %s", (long, invoice_id))
        cur.execute("UPDATE stampli_vendors SET payload = jsonb_set(payload, '{vendor_name}',"
                    " to_jsonb(%s::text)) WHERE vendor_id = 'v-1003'",
                    ("Brightline Office Supplies and Services Incorporated",))
    assert process_invoice(invoice_id, client(), CTX) == "posted"
    posted = _invoices(connected["x3"], "BO-7731")[0]
    assert posted["BPSINVLIG"][0]["DES"] == long[:30]
    notes = {a["stage"]: a["detail"].get("shortened") for a in _audit(invoice_id)
             if a["detail"].get("shortened")}
    assert notes["gl_validate"] == [
        f"line 1 description cut to 30 characters (X3 DES limit; it had {len(long)})"]
    assert notes["vendor_create"] == [
        "name cut to 35 characters (X3 BPSNAM limit; it had 52)"]


def test_out_of_retries_under_review_stays_unknown_until_settled(parsed, slow_x3):
    """A re-export lands while the outcome is unknown, then retries run out: the row keeps
    being looked up (outcome_unknown), it does not go to review blind (found by review)."""
    c = _LosesFirstCreate(client())
    invoice_id = parsed["BO-7731"]
    _post_unanswered(invoice_id, c)
    with db.transaction() as cur:
        cur.execute("UPDATE invoices SET review_reason = 'changed re-export' WHERE id = %s",
                    (invoice_id,))
    assert posting.fail(CTX, invoice_id, "X3Unavailable: retries exhausted") == "outcome_unknown"
    assert _row(invoice_id)["attempt_started_at"] is not None


def test_a_row_left_in_flight_with_a_review_reason_goes_to_review(parsed, connected):
    """Settled (no attempt pending) but changed meanwhile and left in an in-flight status by a
    dead worker: the next post hands it to a person instead of skipping it for ever."""
    c = client()
    invoice_id = parsed["BO-7731"]
    vendors.resolve(CTX, invoice_id, c)
    with db.transaction() as cur:
        cur.execute("UPDATE invoices SET status = 'outcome_unknown', attempt_started_at = NULL,"
                    " attempts = 1, review_reason = 'changed re-export' WHERE id = %s",
                    (invoice_id,))
    assert posting.post(CTX, invoice_id, c).status == "skipped"
    assert _row(invoice_id)["status"] == "needs_review"
    assert _invoices(connected["x3"], "BO-7731") == []


def test_a_create_is_on_record_as_soon_as_it_answered(db_env):
    """A worker dying after the create answered must not lose its attempt record: it is written
    before the block that made it ends (found by review)."""
    from pipeline.x3 import attempts

    class _Creates:
        def create_invoice(self, invoice):
            attempts.Try("POST").done("ok", 201)
            return "SIV000042"

    with attempts.recording(invoice_id=42, task_id="t"):
        assert attempts.RecordingClient(_Creates()).create_invoice(None) == "SIV000042"
        with db.transaction() as cur:  # still inside: as a crash right here would leave it
            cur.execute("SELECT call, outcome, http_status FROM x3_attempts"
                        " WHERE invoice_id = 42")
            assert cur.fetchall() == [{"call": "create_invoice", "outcome": "ok",
                                       "http_status": 201}]
