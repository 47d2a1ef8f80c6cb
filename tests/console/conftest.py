"""Console fixtures: a ledger filled by the real pipeline (polls against sshd, posts to the X3
simulator): 2026/117 posted, BO-7731 failed on an unknown GL code, INV-88121 under review after
a changed re-export; the app and its test client; chromium; the console served in a thread."""

from __future__ import annotations

import pytest

from tests.console import helpers


@pytest.fixture
def ledger_filled(connected):
    from pipeline import db, ledger
    from pipeline.audit import TaskContext
    from pipeline.run_once import process_invoice
    from pipeline.stampli import poll
    from pipeline.x3.connect import open_client

    ctx = TaskContext(task_id="test", attempt=1)
    export = connected["sftp"].export_dir
    with db.transaction() as cur:
        client = open_client(cur)

    def run() -> None:
        poll.poll(ctx)  # the first listing only notes sizes (stability)
        for file_id in poll.poll(ctx).new_file_ids:
            for invoice_id in ledger.parse_file(ctx, file_id).invoice_ids:
                process_invoice(invoice_id, client, ctx)

    helpers.drop_export_with_unknown_gl(export)
    run()
    helpers.drop_changed_reexport(export)
    run()
    client.close()
    with db.transaction() as cur:
        cur.execute("SELECT payload->>'invoice_number' AS n, id, status FROM invoices")
        ids = {r["n"]: r for r in cur.fetchall()}
    assert ids["BO-7731"]["status"] == "failed", ids
    assert ids["INV-88121"]["status"] == "needs_review", ids
    return {**connected, "ids": {k: v["id"] for k, v in ids.items()}}


@pytest.fixture
def app(db_env):
    from console import create_app

    return create_app({"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def browser():
    """One chromium per module, closed with it (Playwright's sync API runs its own loop)."""
    from playwright.sync_api import sync_playwright

    from tests.console.browser import CHROMIUM

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def console_url(db_env):
    from tests.console.browser import serve_console

    with serve_console() as url:
        yield url
