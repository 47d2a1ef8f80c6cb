"""An X3 slower than our timeout: half of the creates (invoices and suppliers) commit 5 s after
the request, the client gives up after 1 s. Through real workers, over both transports: every
invoice and every supplier in X3 exactly once, the slow ones adopted and audited as such."""

import pytest

from pipeline import db
from sandbox.generate import generate
from sandbox.harness import wait_for
from tests.e2e.conftest import settled_with
from tests.e2e.test_exactly_once import assert_x3_matches

pytestmark = pytest.mark.e2e
N, V = 40, 8


@pytest.fixture
def slow_env(stack_env):
    stack_env.update(MLC_X3_TIMEOUT="1", MLC_X3_DEADLINE="4", MLC_X3_INFLIGHT_WINDOW="8",
                     MLC_VISIBILITY_TIMEOUT="30", MLC_TASK_TIME_LIMIT="20",
                     MLC_RETRY_BACKOFF_MAX="3", MLC_MAX_RETRIES="5")


@pytest.mark.parametrize("transport", ["rest", "graphql"])
def test_slow_commits_are_adopted_never_doubled(slow_env, stack, transport):
    from bench.stack import x3_connection
    from pipeline import connections

    if transport == "graphql":
        with db.transaction() as cur:
            connections.save(cur, "x3", *x3_connection(transport, stack.url))
    expected = generate(stack.sftp.export_dir, invoices=N, lines=2, vendors=V, prefix="S")
    stack.faults(slow_commit_rate=0.5, slow_commit_ms=5000)
    stack.poll()
    s = wait_for(settled_with(N), timeout=180, interval=1, what=f"{N} invoices settled")
    assert s["invoices"] == {"posted": N}
    state = stack.sim()
    assert_x3_matches(state, expected)  # no invoice and no supplier twice
    assert len(state["invoices"]) == N
    assert len(state["suppliers"]) == 1 + V
    assert state["stats"]["faults"].get("slow_commit", 0) > 0
    with db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM audit_events WHERE stage = 'invoice_post'"
                    " AND outcome = 'ok' AND (detail->>'adopted')::boolean")
        adopted = cur.fetchone()["n"]
        cur.execute("SELECT count(*) AS n FROM x3_attempts WHERE call = 'create_invoice'"
                    " AND outcome = 'unknown'")
        unknown = cur.fetchone()["n"]
        cur.execute("SELECT count(*) AS n FROM audit_events WHERE stage = 'vendor_create'"
                    " AND outcome = 'ok' AND (detail->>'adopted')::boolean")
        adopted_suppliers = cur.fetchone()["n"]
        cur.execute("SELECT count(*) AS n FROM x3_attempts WHERE call = 'create_supplier'"
                    " AND outcome = 'unknown'")
        unknown_suppliers = cur.fetchone()["n"]
    # Every create that timed out was settled by a look-up, never by a second create.
    assert adopted == unknown > 0
    assert adopted_suppliers == unknown_suppliers
