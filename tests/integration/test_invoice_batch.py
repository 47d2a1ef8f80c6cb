"""mlc.process_invoices settles each invoice alone: one to retry is handed on as its own
mlc.process_invoice (same countdown, attempt number and audit retry row, counted in
mlc_retries_total), an X3 refusal goes through the single task's failure hook, a bug is logged
and the batch goes on; a transient database error retries the batch from the invoice it hit,
the soft time limit hands that rest to a new batch; past a quarter of the task time limit the
rest goes on in a new batch. The steps of one invoice are patched here (the e2e tests run them
for real); the audit trail is real."""

from __future__ import annotations

import logging

import psycopg2
import pytest

from ops import metrics
from pipeline import db, logs, posting
from pipeline.x3.errors import X3Unavailable, X3ValidationError

pytestmark = pytest.mark.integration


@pytest.fixture
def batch(db_env, monkeypatch):
    """The batch task, what it sends, and the failures it hands the hook."""
    from tasks import invoice
    from workers.app import app

    sent: list[tuple[str, list, dict]] = []
    for name in (invoice.NAME, invoice.BATCH_NAME):
        monkeypatch.setattr(app.tasks[name], "apply_async",
                            lambda args, _n=name, **kw: sent.append((_n, args, kw)))
    failed: list[tuple[int, str]] = []
    monkeypatch.setattr(posting, "fail", lambda ctx, invoice_id, reason, **kw:
                        failed.append((invoice_id, reason)))
    task = app.tasks[invoice.BATCH_NAME]
    task.push_request(id="batch-1", retries=0)
    yield task, sent, failed
    task.pop_request()


def _steps(monkeypatch, outcomes, seen=None):
    from tasks import invoice

    def post_one(ctx, invoice_id):
        if seen is not None:
            seen.append((invoice_id, logs.context().get("invoice_id"), ctx.task_id))
        outcome = outcomes[invoice_id]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome if outcome is None else {"invoice_id": invoice_id, "status": outcome}

    monkeypatch.setattr(invoice, "_post_one", post_one)


def test_each_invoice_of_a_batch_settles_alone(batch, monkeypatch, caplog):
    from tasks import invoice

    task, sent, failed = batch
    seen: list = []
    _steps(monkeypatch, {
        1: "posted",
        2: invoice.RetryLater(X3Unavailable("X3 is busy", retry_after=5), 5, "invoice_post"),
        3: X3ValidationError("X3 refused: account 9999"),
        4: posting.InvoiceRejectedByValidation("line 1: GL account 9999 does not exist"),
        5: RuntimeError("a bug"),
        6: None,  # posted or under review meanwhile
        7: "posted",
    }, seen)
    with caplog.at_level(logging.INFO):
        summary = task.run([1, 2, 3, 4, 5, 6, 7])

    assert summary == {"posted": 2, "retried": 1, "failed": 1, "rejected": 1, "error": 1,
                       "skipped": 1}
    # In order, every one under its own invoice_id, in the batch's task.
    assert seen == [(i, i, "batch-1") for i in range(1, 8)]
    # The invoice to retry: its own task, the same countdown a retry would wait, attempt 2.
    ((name, args, options),) = sent
    assert (name, args, options["retries"]) == ("mlc.process_invoice", [2], 1)
    assert 5 <= options["countdown"] <= 6
    assert failed == [(3, "X3ValidationError: X3 refused: account 9999")]
    bug = [r for r in caplog.records if "invoice 5: unexpected error" in r.getMessage()]
    assert bug and bug[0].exc_info and bug[0].levelno == logging.ERROR

    with db.transaction() as cur:
        cur.execute("SELECT stage, outcome, invoice_id, task_id, attempt, detail"
                    " FROM audit_events")
        (row,) = cur.fetchall()
    assert (row["stage"], row["outcome"], row["invoice_id"], row["task_id"], row["attempt"]) \
        == ("invoice_post", "error", 2, "batch-1", 1)
    assert row["detail"]["retry"] is True and row["detail"]["next_attempt"] == 2
    assert row["detail"]["task"] == "mlc.process_invoices"
    assert row["detail"]["error"] == "X3Unavailable: X3 is busy"
    assert 5 <= row["detail"]["retry_in_s"] <= 6
    exposition = metrics.exposition().decode()
    assert "mlc_retries_total 1.0" in exposition.splitlines()


def test_a_transient_database_error_retries_the_batch_from_the_invoice_it_hit(batch,
                                                                             monkeypatch):
    """Not the whole batch again: invoices settled or handed on before it would each run (and
    count a try) once more on every retry (found by review)."""
    from celery.exceptions import Retry

    task, sent, failed = batch
    _steps(monkeypatch, {1: "posted", 2: psycopg2.OperationalError("server closed"),
                         3: "posted"})
    retried = []

    def retry(args=None, kwargs=None, exc=None, countdown=None, **options):
        retried.append((args, kwargs, type(exc).__name__, countdown))
        raise Retry("retry", exc)

    monkeypatch.setattr(task, "retry", retry)
    with pytest.raises(Retry):
        task.run([1, 2, 3])
    ((args, kwargs, error, countdown),) = retried
    assert (args, kwargs, error) == ([[2, 3]], {}, "OperationalError")
    assert 1 <= countdown <= 2  # the first retry's backoff
    assert sent == [] and failed == []


def test_the_soft_time_limit_hands_the_rest_on_before_the_task_fails(batch, monkeypatch):
    from celery.exceptions import SoftTimeLimitExceeded

    task, sent, failed = batch
    _steps(monkeypatch, {1: "posted", 2: SoftTimeLimitExceeded(), 3: "posted"})
    with pytest.raises(SoftTimeLimitExceeded):
        task.run([1, 2, 3])
    # The invoice it hit may have been half done: it goes on too (every step is idempotent).
    assert sent == [("mlc.process_invoices", [[2, 3]], {})] and failed == []


def test_past_a_quarter_of_the_time_limit_the_rest_goes_on_in_a_new_batch(batch, monkeypatch):
    from pipeline.config import settings
    from tasks import invoice

    task, sent, _ = batch
    assert settings().task_time_limit == 600  # a budget of 150 s
    now, step = [1000.0], [100.0]  # a slow X3: 100 s an invoice
    monkeypatch.setattr(invoice, "_clock", lambda: now[0])
    done = []

    def post_one(ctx, invoice_id):
        done.append(invoice_id)
        now[0] += step[0]
        return {"invoice_id": invoice_id, "status": "posted"}

    monkeypatch.setattr(invoice, "_post_one", post_one)
    summary = task.run([1, 2, 3, 4, 5])
    assert done == [1, 2]  # 200 s spent before the third: past 150
    assert sent == [("mlc.process_invoices", [[3, 4, 5]], {})]
    assert summary == {"posted": 2, "handed_on": 3}

    # However slow, a batch always moves its first invoice on.
    done.clear()
    sent.clear()
    step[0] = 10_000
    assert task.run([3, 4, 5]) == {"posted": 1, "handed_on": 2}
    assert done == [3] and sent == [("mlc.process_invoices", [[4, 5]], {})]


@pytest.mark.parametrize(("per_task", "expected"), [
    (8, [("mlc.process_invoices", [1, 2, 3, 4, 5, 6, 7, 8]),
         ("mlc.process_invoices", [9, 10, 11, 12, 13, 14, 15, 16]),
         ("mlc.process_invoices", [17, 18, 19])]),
    (1, [("mlc.process_invoice", i) for i in range(1, 20)]),
])
def test_the_parse_task_fans_out_chunks_of_consecutive_invoices(db_env, monkeypatch,
                                                                per_task, expected):
    from pipeline.config import settings
    from tasks import invoice, parse
    from workers.app import app

    monkeypatch.setenv("MLC_INVOICES_PER_TASK", str(per_task))
    settings.cache_clear()
    sent = []
    for name in (invoice.NAME, invoice.BATCH_NAME):
        monkeypatch.setattr(app.tasks[name], "delay",
                            lambda arg, _n=name: sent.append((_n, arg)))
    parse.fan_out(list(range(1, 20)))
    assert sent == expected
