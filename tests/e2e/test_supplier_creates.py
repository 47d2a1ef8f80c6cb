"""Supplier creates whose answers are lost, through real worker processes: each supplier is
created once and adopted by the retry (issue 11), never created a second time."""

import pytest

from pipeline import db
from sandbox.generate import generate
from sandbox.harness import wait_for
from tests.e2e.conftest import settled_with
from tests.e2e.test_exactly_once import assert_x3_matches

pytestmark = pytest.mark.e2e


@pytest.fixture
def quick_retries(stack_env):
    stack_env.update(MLC_RETRY_BACKOFF_MAX="3", MLC_X3_TIMEOUT="2", MLC_X3_DEADLINE="4",
                     MLC_X3_INFLIGHT_WINDOW="6")


def test_lost_supplier_create_answers_adopted_once(quick_retries, stack):
    expected = generate(stack.sftp.export_dir, invoices=30, lines=1, vendors=6)
    stack.faults(drop_after_commit_rate=0.7)  # most creates commit, then the answer is lost
    stack.poll()
    s = wait_for(settled_with(30), timeout=180, interval=1, what="30 invoices settled")
    assert s["invoices"] == {"posted": 30}
    state = stack.sim()
    assert_x3_matches(state, expected)  # includes: no supplier code twice
    assert len(state["suppliers"]) == 1 + 6
    assert state["stats"]["creates"]["BPSUPPLIER"] == 6  # sent once each, never re-sent
    with db.transaction() as cur:
        cur.execute("SELECT matched_by, count(*) AS n FROM vendor_links GROUP BY 1")
        links = {r["matched_by"]: r["n"] for r in cur.fetchall()}
        cur.execute("SELECT count(*) AS n FROM audit_events WHERE stage = 'vendor_create'"
                    " AND outcome = 'ok' AND detail->>'adopted' = 'true'")
        adopted = cur.fetchone()["n"]
        cur.execute("SELECT count(*) AS n FROM supplier_creates WHERE state IN"
                    " ('sending', 'unknown')")
        still_open = cur.fetchone()["n"]
    assert links.get("created", 0) + links.get("adopted", 0) == 6
    assert links.get("adopted", 0) >= 1 and adopted == links["adopted"]
    assert still_open == 0
    assert s["vendors_created"] == 6  # adopted ones were created by us too
