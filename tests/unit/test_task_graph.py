"""The task graph the README names is the one the code registers; renamed tasks stay
registered so messages queued before a deploy still run; ids reach logs however they are
passed; a failure goes through the task's one failure hook."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import workers.app  # noqa: F401
from pipeline.x3.errors import X3ValidationError
from workers.app import app

README = Path(__file__).resolve().parents[2] / "README.md"


def _registered() -> set[str]:
    app.loader.import_default_modules()
    return {n for n in app.tasks if n.startswith("mlc.")}


def test_readme_task_graph_names_every_queued_task():
    section = README.read_text().split("## How it runs", 1)[1]
    graph = section.split("```", 2)[1]  # the drawing
    named = set(re.findall(r"mlc\.[a-z_]+", graph))
    assert named == {"mlc.fetch_exports", "mlc.parse_file", "mlc.process_invoices",
                     "mlc.process_invoice", "mlc.replay"}
    assert named <= _registered()


def test_renamed_tasks_run_the_same_body():
    from tasks.invoice import RENAMED, process_invoice

    for old in RENAMED:
        assert app.tasks[old].run.__code__ is process_invoice.run.__code__


@pytest.mark.parametrize("call", [((7,), {}), ((), {"invoice_id": 7})])
def test_ids_are_found_positional_or_by_name(call):
    from tasks.invoice import process_invoice

    args, kwargs = call
    assert process_invoice.ids(args, kwargs) == {"file_id": None, "invoice_id": 7}


@pytest.mark.parametrize("call", [(([7, 8],), {}), ((), {"invoice_ids": [7, 8]})])
def test_a_batch_has_no_one_invoice_id(call):
    """Its invoices are bound one by one inside (tasks/invoice.py); its list names none."""
    from tasks.invoice import process_invoices

    args, kwargs = call
    assert process_invoices.ids(args, kwargs) == {"file_id": None, "invoice_id": None}


def test_a_failed_invoice_goes_through_the_one_failure_hook(monkeypatch):
    from pipeline import posting
    from tasks.invoice import process_invoice

    failed = []
    monkeypatch.setattr(posting, "fail", lambda ctx, invoice_id, reason, **kw:
                        failed.append((invoice_id, reason)))
    process_invoice.push_request(id="t-1", retries=0)
    try:
        process_invoice.on_failure(X3ValidationError("X3 refused: account 9999"), "t-1",
                                   (7,), {}, None)
    finally:
        process_invoice.pop_request()
    assert failed == [(7, "X3ValidationError: X3 refused: account 9999")]
    assert issubclass(X3ValidationError, process_invoice.throws)
