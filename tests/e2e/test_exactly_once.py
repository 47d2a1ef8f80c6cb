"""Exactly once into X3 with real worker processes: volume, a killed worker, lost answers and
overload, and a failed invoice fixed and replayed."""

import os
import subprocess
import sys
from collections import Counter
from decimal import Decimal

import pytest

from pipeline import db
from sandbox.generate import generate
from sandbox.harness import wait_for
from tests.e2e.conftest import settled_with, summary

pytestmark = pytest.mark.e2e


def assert_x3_matches(state, expected):
    """Every expected invoice exactly once, on the right supplier, with its lines and totals."""
    ours = {e.number for e in expected}
    invoices = [i for i in state["invoices"] if i["BPRVCR"] in ours]
    counts = Counter(i["BPRVCR"] for i in invoices)
    assert [n for n, c in counts.items() if c > 1] == [], "invoices posted twice"
    assert ours - set(counts) == set(), "invoices missing"
    by_number = {i["BPRVCR"]: i for i in invoices}
    for e in expected:
        got = by_number[e.number]
        assert got["BPR"] == e.vendor_code
        assert Decimal(got["AMTATI"]) == e.total
        assert [(ln["LIG"], ln["ACC"], Decimal(ln["AMTNOTLIN"])) for ln in got["BPSINVLIG"]] \
            == list(e.lines)
    codes = Counter(s["BPSNUM"] for s in state["suppliers"])
    assert [c for c, n in codes.items() if n > 1] == [], "suppliers created twice"
    same = Counter((s.get("BPSNAM"), s.get("CRN") or s.get("EECNUM")) for s in state["suppliers"])
    assert [k for k, n in same.items() if n > 1] == [], "one vendor, several suppliers"


def test_500_invoices_20_new_vendors_4_worker_processes(stack):
    stack.start_worker(concurrency=2)  # two workers of two processes each
    expected = generate(stack.sftp.export_dir, invoices=500, lines=2, vendors=20)
    stack.poll()
    s = wait_for(settled_with(500), timeout=240, interval=1, what="500 invoices settled")
    assert s["invoices"] == {"posted": 500}
    state = stack.sim()
    assert_x3_matches(state, expected)
    assert len(state["invoices"]) == 500
    assert len(state["suppliers"]) == 1 + 20  # the seeded ACME01 and 20 created
    assert s["vendors_created"] == 20


@pytest.fixture
def short_visibility(stack_env):
    # Redelivery of a killed worker's messages happens after the visibility timeout: keep it
    # short here, with the task limit and backoff below it as in production.
    stack_env.update(MLC_VISIBILITY_TIMEOUT="10", MLC_TASK_TIME_LIMIT="8",
                     MLC_RETRY_BACKOFF_MAX="3")


def test_sigkill_a_worker_while_it_posts(short_visibility, stack):
    expected = generate(stack.sftp.export_dir, invoices=60, lines=1, vendors=3)
    stack.faults(latency_ms=150)
    stack.poll()

    def posting_started():
        s = summary()["invoices"]
        return s.get("posted", 0) >= 5 and s.get("posting", 0) >= 1

    wait_for(posting_started, timeout=60, what="posting under way")
    stack.worker.kill()  # SIGKILL to the worker and its pool children, mid-post
    stack.start_worker()
    s = wait_for(settled_with(60), timeout=120, interval=1, what="60 invoices settled")
    assert s["invoices"] == {"posted": 60}
    assert_x3_matches(stack.sim(), expected)


def test_lost_answers_and_overload_still_exactly_once(short_visibility, stack):
    expected = generate(stack.sftp.export_dir, invoices=100, lines=2, vendors=10)
    stack.faults(drop_after_commit_rate=0.1, error_rate_503=0.1, retry_after=1)
    stack.poll()
    s = wait_for(settled_with(100), timeout=180, interval=1, what="100 invoices settled")
    assert s["invoices"] == {"posted": 100}
    state = stack.sim()
    assert state["stats"]["faults"].get("drop", 0) > 0  # the faults really happened
    assert_x3_matches(state, expected)
    with db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM audit_events WHERE stage = 'invoice_post'"
                    " AND detail->>'adopted' = 'true'")
        assert cur.fetchone()["n"] > 0  # lost answers were adopted, not re-posted


def test_unknown_account_fixed_and_replayed_through_cli_and_celery_call(stack, tmp_path):
    from tests.conftest import drop_samples

    with db.transaction() as cur:
        cur.execute("INSERT INTO gl_account_map VALUES ('6500', '6599'), ('6300', '6399')")
    drop_samples(stack.sftp.export_dir)
    stack.poll()
    s = wait_for(settled_with(3), timeout=60, what="samples settled")
    assert s["invoices"] == {"posted": 1, "failed": 2}
    with db.transaction() as cur:
        cur.execute("SELECT id, payload->>'invoice_number' AS n, last_error FROM invoices"
                    " WHERE status = 'failed' ORDER BY id")
        failed = {r["n"]: r for r in cur.fetchall()}
    assert "line 1: GL account 6599 does not exist in X3 chart CONS" in \
        failed["BO-7731"]["last_error"]
    assert "line 2: GL account 6399" in failed["INV-88121"]["last_error"]
    assert len(stack.sim()["invoices"]) == 1

    fixed = tmp_path / "gl.csv"
    fixed.write_text("stampli_code,x3_account\n6500,6500\n6300,6300\n")
    env = stack.env
    mlc = [sys.executable, "-m", "ops.cli"]
    subprocess.run([*mlc, "mapping", "import", "gl", str(fixed)], env=env, check=True)
    out = subprocess.run([*mlc, "replay", "--invoice", "V-1003", "BO-7731", "--reason",
                          "GL 6500 mapped"], env=env, check=True, capture_output=True,
                         text=True).stdout
    assert "replaying 1 invoice(s): invoice BO-7731 of vendor V-1003" in out
    call = subprocess.run([sys.executable, "-m", "celery", "-A", "workers", "call", "mlc.replay",
                           "--kwargs", f'{{"invoice_id": {failed["INV-88121"]["id"]}}}'],
                          env=env, capture_output=True, text=True, timeout=60)
    assert call.returncode == 0, call.stderr
    s = wait_for(lambda: summary()["invoices"] == {"posted": 3} and summary(), timeout=60,
                 what="both replays posted")
    state = stack.sim()
    assert sorted(i["BPRVCR"] for i in state["invoices"]) == ["2026/117", "BO-7731", "INV-88121"]
    with db.transaction() as cur:
        cur.execute("SELECT stage, outcome FROM audit_events WHERE invoice_id = %s ORDER BY id",
                    (failed["BO-7731"]["id"],))
        story = [(r["stage"], r["outcome"]) for r in cur.fetchall()]
    assert story.index(("gl_validate", "error")) < story.index(("replay", "ok")) \
        < story.index(("invoice_post", "ok"))
    assert os.environ.get("MLC_SECRET_KEYS")  # the CLI ran with the same keys
