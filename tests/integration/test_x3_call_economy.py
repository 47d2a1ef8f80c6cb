"""X3 calls are licensed sessions: what a run spends, counted by the simulator.

A file's accounts and dimensions cost one batched query per type, whatever the number of
invoices and worker processes; codes X3 does not know are asked again every time; the shared
cache is a shortcut only (Redis down: X3 is asked)."""

import pytest
import redis
import requests

from pipeline import db, validation
from pipeline.run_once import run_once
from sandbox.generate import compare_with_x3, generate
from tests.integration.conftest import client, sim_state

pytestmark = pytest.mark.integration


def _calls(url: str) -> dict[str, int]:
    return sim_state(url)["stats"]["calls"]


def test_a_runs_x3_calls_are_one_per_invoice_two_per_new_vendor_and_one_per_code_type(connected):
    url, n, v = connected["x3"], 12, 2
    expected = generate(connected["sftp"].export_dir, invoices=n, lines=5, vendors=v)
    c = client()
    run_once(c)  # the first poll only sees the files (stability check)
    report = run_once(c)
    assert sorted(report.outcomes.values()) == ["posted"] * n
    state = sim_state(url)
    diff = compare_with_x3(state, expected)
    assert diff["posted"] == n and not diff["missing"] and not diff["duplicated"]
    # Necessary calls: a create per invoice, a look-up and a create per new vendor, and one
    # validation query per code type for the whole file (3 accounts, 3 cost centers here).
    assert state["stats"]["requests"] <= n + 2 * v + 2
    assert state["stats"]["calls"] == {"create BPSINVOICE": n, "create BPSUPPLIER": v,
                                       "query BPSUPPLIER": v, "query GACCOUNT": 1,
                                       "query CACCE": 1}
    with db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM audit_events WHERE stage = 'gl_validate'"
                    " AND outcome = 'ok'")
        assert cur.fetchone()["n"] == n  # every invoice still validated, on the record


def test_codes_one_process_confirmed_are_known_to_another_until_forgotten(connected):
    url = connected["x3"]
    accounts, dims = {"6100", "6300"}, {("CCT", "PLANT1")}
    assert validation.known_codes(client(), "CONS", accounts, dims) == (accounts, dims)
    asked = sum(_calls(url).values())
    assert asked == 2
    validation._known.clear()  # what another worker process starts with: an empty memory
    assert validation.known_codes(client(), "CONS", accounts, dims) == (accounts, dims)
    assert sum(_calls(url).values()) == asked  # served by the shared tier
    validation.forget()  # what a refused invoice does: every tier dropped
    assert validation.known_codes(client(), "CONS", accounts, dims) == (accounts, dims)
    assert sum(_calls(url).values()) == asked + 2


def test_unknown_codes_are_asked_again_every_time(connected):
    url, c = connected["x3"], client()
    for _ in range(2):
        assert validation.known_codes(c, "CONS", {"6100", "7777"}, {("CCT", "NOPE")}) == (
            {"6100"}, set())
    calls = _calls(url)
    assert calls["query GACCOUNT"] == 2 and calls["query CACCE"] == 2
    # X3 fixed meanwhile: seen at once.
    seed = sim_state(url)
    seed["accounts"].append({"COA": "CONS", "ACC": "7777", "DES": "New"})
    requests.post(f"{url}/_sim/seed", json={k: seed[k] for k in (
        "suppliers", "accounts", "dimensions", "invoices")}, timeout=5).raise_for_status()
    assert validation.known_codes(c, "CONS", {"6100", "7777"}, set())[0] == {"6100", "7777"}


def test_a_redis_that_is_down_only_costs_x3_calls(connected, monkeypatch):
    dead = redis.Redis(port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    monkeypatch.setattr(validation, "_shared", lambda: dead)
    validation.forget()  # logs, does not raise
    c = client()
    for _ in range(2):
        validation._known.clear()
        assert validation.known_codes(c, "CONS", {"6100", "7777"}, {("CCT", "PLANT1")}) == (
            {"6100"}, {("CCT", "PLANT1")})
    assert _calls(connected["x3"])["query GACCOUNT"] == 2


def test_the_prefetch_tries_once_and_lets_the_file_go_on(connected):
    """A busy X3 must not hold a file's fan-out up (nor spend the licensed calls on retries):
    one try, then each invoice checks its own codes (found by review)."""
    from pipeline import ledger, prefetch
    from pipeline.audit import TaskContext
    from pipeline.stampli import poll

    url, ctx = connected["x3"], TaskContext(task_id="t", attempt=1)
    generate(connected["sftp"].export_dir, invoices=4, lines=2, vendors=1)
    poll.poll(ctx)
    ids = [i for f in poll.poll(ctx).new_file_ids for i in ledger.parse_file(ctx, f).invoice_ids]
    requests.post(f"{url}/_sim/faults", json={"next_errors": [503] * 4},
                  timeout=5).raise_for_status()
    before = sim_state(url)["stats"]["requests"]
    assert prefetch.prefetch_codes(ids) == 0
    assert sim_state(url)["stats"]["requests"] - before == 1
    requests.post(f"{url}/_sim/reset", timeout=5).raise_for_status()
    assert prefetch.prefetch_codes(ids) == 3 + 3  # accounts and cost centers
