"""The console in a real browser (Debian's chromium through Playwright), as the finance team
uses it: over a real Celery worker and the X3 simulator for the replay story."""

from __future__ import annotations

import pytest

from pipeline import db
from sandbox.harness import wait_for
from tests.console import helpers
from tests.console.browser import login, reload_until, shoot
from tests.e2e.conftest import settled_with, stack, stack_env  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e


def status_of(number: str) -> str:
    with db.transaction() as cur:
        cur.execute("SELECT status FROM invoices WHERE payload->>'invoice_number' = %s",
                    (number,))
        row = cur.fetchone()
        return row["status"] if row else ""


def invoice_id(number: str) -> int:
    with db.transaction() as cur:
        cur.execute("SELECT id FROM invoices WHERE payload->>'invoice_number' = %s", (number,))
        return cur.fetchone()["id"]


def test_failed_invoice_fixed_by_a_mapping_replayed_to_posted_then_a_review_acknowledged(
        stack, console_url, browser, tmp_path):  # noqa: F811 - stack is a fixture
    helpers.add_user("ada", "admin")
    helpers.drop_export_with_unknown_gl(stack.sftp.export_dir)
    stack.poll()
    wait_for(settled_with(3), timeout=60, interval=0.3, what="the samples settled")
    assert status_of("BO-7731") == "failed"
    shots = tmp_path / "shots"
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    # A changed re-export of a posted invoice puts it under review.
    helpers.drop_changed_reexport(stack.sftp.export_dir)
    stack.poll()
    wait_for(lambda: status_of("INV-88121") == "needs_review", timeout=45, interval=0.3,
             what="INV-88121 under review")
    login(page, console_url, "ada", helpers.PASSWORD)

    # Overview: counts and charts.
    assert page.inner_text("[data-status=failed]") == "1"
    assert page.inner_text("[data-status=needs_review]") == "1"
    assert page.inner_text("[data-status=posted]") == "1"
    shoot(page, shots, "overview")

    # The failed invoice and its reason, from the review queue (reasons grouped).
    page.click("text=Review & failed")
    queue = page.inner_text("main")
    assert "GL account 7777 does not exist in X3" in queue
    assert "changed re-export of an invoice already posted" in queue
    shoot(page, shots, "review_queue")
    page.click("a:text('BO-7731')")
    assert "GL account 7777 does not exist in X3" in page.inner_text("#last-error")

    # Upload the missing GL mapping: the preview checks it against X3, then it is saved.
    page.click("header >> text=Mappings")
    page.select_option("#kind", "gl")
    page.set_input_files("input[type=file]", files=[{
        "name": "gl.csv", "mimeType": "text/csv",
        "buffer": f"stampli_code,x3_account\n{helpers.UNKNOWN_GL},6500\n".encode()}])
    page.click("#preview-button")
    assert "All 1 row(s) are valid in X3" in page.inner_text("#preview-verdict")
    assert "GL account 6500 (chart CONS) exists in X3" in page.inner_text("#preview-table")
    shoot(page, shots, "mapping_preview")
    page.click("#save-button")
    assert "1 row(s) saved" in page.inner_text("main")
    assert "7777" in page.inner_text("#gl-table")

    # Replay it with a reason; the worker posts it.
    page.goto(f"{console_url}/invoices/{invoice_id('BO-7731')}")
    page.fill("input[name=reason]", "GL 7777 mapped to 6500")
    page.click("#replay-button")
    assert "replay queued" in page.inner_text("main")
    reload_until(page, lambda: page.inner_text("#invoice-status") == "posted", timeout=45,
                 what="BO-7731 posted")
    assert page.inner_text("#x3-document").startswith("SIV")
    timeline = page.inner_text("#timeline")
    assert "by ada" in timeline and "GL 7777 mapped to 6500" in timeline
    shoot(page, shots, "invoice_detail")

    # The review: its field-by-field diff, and an acknowledgement.
    page.click("text=Review & failed")
    page.click("a:text('INV-88121')")
    diff = page.inner_text("#review-diff")
    assert "Hydraulic hose assemblies" in diff and "Hydraulic hoses revised" in diff
    shoot(page, shots, "invoice_review_diff")
    page.fill("input[name=note]", "description only; X3 keeps the posted one")
    page.click("#ack-button")
    assert "Acknowledged by ada" in page.inner_text("main")
    page.click("text=Review & failed")
    assert "Nothing waits for a person" in page.inner_text("main")
    assert status_of("INV-88121") == "needs_review"  # nothing re-posted
    page.click("header >> text=Activity")
    activity = page.inner_text("#activity")
    for seen in ("acknowledge", "mapping_import", "replay", "GL 7777 mapped to 6500"):
        assert seen in activity, seen
    assert all((shots / f"{n}.png").stat().st_size > 10_000
               for n in ("overview", "review_queue", "invoice_detail"))
    assert len(stack.sim()["invoices"]) == 3
    assert errors == [], errors  # no CSP violation, no script error
    page.close()


@pytest.mark.integration
def test_viewer_has_no_replay_and_forged_or_tokenless_posts_are_refused(
        ledger_filled, console_url, browser, tmp_path):
    helpers.add_user("vera", "viewer")
    helpers.add_user("olga", "operator")
    bo = ledger_filled["ids"]["BO-7731"]
    context = browser.new_context()
    page = context.new_page()
    login(page, console_url, "vera", helpers.PASSWORD)
    page.goto(f"{console_url}/invoices/{bo}")
    assert "GL account 7777 does not exist in X3" in page.inner_text("#last-error")
    assert page.locator("#replay-button").count() == 0
    # A forged POST with the viewer's own valid token: the role decides, 403.
    token = page.get_attribute("header input[name=csrf_token]", "value")
    r = context.request.post(f"{console_url}/invoices/{bo}/replay",
                             form={"reason": "forged", "csrf_token": token})
    assert r.status == 403 and "may not do this" in r.text()
    context.close()
    # An operator's POST without the CSRF token is refused before anything happens.
    context = browser.new_context()
    page = context.new_page()
    login(page, console_url, "olga", helpers.PASSWORD)
    r = context.request.post(f"{console_url}/invoices/{bo}/replay", form={"reason": "no token"})
    assert r.status == 400 and "security token" in r.text()
    page.goto(f"{console_url}/invoices/{bo}")
    assert page.locator("#replay-button").count() == 1
    assert status_of("BO-7731") == "failed"
    context.close()
