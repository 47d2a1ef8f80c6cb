"""Several worker processes against one X3: one token refresh at a time, and the call cap.

Workers are real processes (tests/integration/x3_hammer.py) sharing real Postgres and Redis;
the simulator runs in a thread of the test process.
"""

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
import requests

from pipeline import connections, db
from pipeline.x3.errors import X3Unavailable
from pipeline.x3.limits import RedisLimiter
from pipeline.x3.tokens import margin_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HAMMER = Path(__file__).with_name("x3_hammer.py")


def save(kind, url):
    with db.transaction() as cur:
        if kind == "rest":
            connections.save(cur, "x3", "x3_rest", {"url": url, "folder": "SEED",
                                                    "username": "admin"}, {"password": "admin"})
        else:
            connections.save(cur, "x3", "x3_graphql", {
                "url": url, "folder": "SEED", "auth": "oauth", "client_id": "demo",
                "token_url": f"{url}/oauth/token"},
                {"client_secret": "demo-secret", "refresh_token": "initial-rt"})


def faults(url, **values):
    requests.post(f"{url}/_sim/faults", json=values, timeout=5).raise_for_status()


def stats(url):
    return requests.get(f"{url}/_sim/state", timeout=5).json()["stats"]


def hammer(processes, calls, **env):
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    procs = [subprocess.Popen([sys.executable, str(HAMMER), str(calls)], cwd=ROOT, env=environ,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_short_lived_tokens_refresh_once_per_lifetime_across_processes(db_env, x3sim):
    lifetime = 2
    save("graphql", x3sim)
    faults(x3sim, token_lifetime=lifetime, latency_ms=80)
    started = time.monotonic()
    results = hammer(4, 50)
    elapsed = time.monotonic() - started
    assert [r["errors"] for r in results] == [[]] * 4
    assert sum(r["ok"] for r in results) == 200
    refreshes = stats(x3sim)["token_refreshes"]
    # Each token serves until the margin before its expiry; never one refresh per call.
    per_token = lifetime - margin_for(lifetime)
    assert 2 <= refreshes <= elapsed / per_token + 2, (refreshes, elapsed)
    # The rotated refresh token was stored each time: the stored one is the live one.
    with db.transaction() as cur:
        stored = connections.load(cur, "x3").secret["refresh_token"]
    assert stored != "initial-rt"
    answer = requests.post(f"{x3sim}/oauth/token", timeout=5, json={
        "grant_type": "refresh_token", "refresh_token": stored, "client_id": "demo",
        "client_secret": "demo-secret"})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("kind", ["rest", "graphql"])
def test_call_cap_holds_across_processes(db_env, x3sim, kind):
    save(kind, x3sim)
    # The simulator refuses calls beyond the licence too: a leak would show as "busy" faults.
    faults(x3sim, latency_ms=60, max_concurrency=2)
    results = hammer(6, 6, MLC_X3_MAX_CONCURRENCY="2")
    assert [r["errors"] for r in results] == [[]] * 6
    seen = stats(x3sim)
    assert seen["max_in_flight"] == 2  # the cap was reached, and never passed
    assert "busy" not in seen["faults"]


@pytest.fixture
def limiter_redis(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_slots_are_capped_and_waiting_ends_in_unavailable(limiter_redis):
    key = f"mlc:test:slots:{uuid.uuid4().hex}"
    limiter = RedisLimiter(limiter_redis, key, 2, lease_seconds=10, wait_seconds=0.2)
    first, second = limiter.try_acquire(), limiter.try_acquire()
    assert first and second and limiter.try_acquire() is None
    assert limiter.in_use() == 2
    with pytest.raises(X3Unavailable, match="slot"):
        with limiter.slot():
            pass
    limiter.release(first)
    with limiter.slot():
        assert limiter.in_use() == 2
    assert limiter.in_use() == 1


HOLDER = """
import sys, time, redis
from pipeline.x3.limits import RedisLimiter
limiter = RedisLimiter(redis.Redis.from_url(sys.argv[1]), sys.argv[2], 1, lease_seconds=1.0)
with limiter.slot():
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_killed_holders_lease_expires(limiter_redis, redis_url):
    key = f"mlc:test:slots:{uuid.uuid4().hex}"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, redis_url, key], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
    finally:
        holder.kill()  # SIGKILL: no finally, no release
        holder.wait()
    limiter = RedisLimiter(limiter_redis, key, 1, lease_seconds=10)
    assert limiter.try_acquire() is None  # the dead process still holds it ...
    killed = time.monotonic()
    deadline = killed + 5
    while (lease := limiter.try_acquire()) is None:
        assert time.monotonic() < deadline, "the dead holder's lease never expired"
        time.sleep(0.05)
    assert time.monotonic() - killed <= 1.5  # ... until its 1 s lease runs out
    limiter.release(lease)


def test_a_lease_whose_answer_was_lost_is_given_back(limiter_redis):
    """The acquire script ran, its answer did not come: the slot must not stay taken."""
    key = f"mlc:test:slots:{uuid.uuid4().hex}"
    limiter = RedisLimiter(limiter_redis, key, 1, lease_seconds=60)
    script = limiter._acquire

    def ran_then_lost(**kwargs):
        script(**kwargs)
        raise redis.TimeoutError("Timeout reading from socket")

    limiter._acquire = ran_then_lost
    with pytest.raises(X3Unavailable, match="limiter unavailable"):
        limiter.try_acquire()
    assert limiter.in_use() == 0


def test_a_waiter_takes_a_slot_the_moment_it_is_given_back(limiter_redis):
    """No polling gap while an X3 session sits free: the waiter is woken by the release, and
    does not spin on Redis meanwhile."""
    key = f"mlc:test:slots:{uuid.uuid4().hex}"
    limiter = RedisLimiter(limiter_redis, key, 1, lease_seconds=10, wait_seconds=10)
    tries, real = [], limiter.try_acquire

    def counted():
        tries.append(time.monotonic())
        return real()

    limiter.try_acquire = counted
    for _ in range(2):
        held = real()
        released: list[float] = []
        timer = threading.Timer(1.0, lambda h=held, r=released: (r.append(time.monotonic()),
                                                                 limiter.release(h)))
        tries.clear()
        timer.start()
        with limiter.slot():
            got = time.monotonic()
        timer.join()
        assert got - released[0] < 0.25
        assert len(tries) <= 5  # woken, or looking again every 0.5 s: not polling
    assert limiter.in_use() == 0


def test_a_small_redis_socket_timeout_still_lets_a_call_wait_for_its_slot(redis_url):
    """MLC_REDIS_SOCKET_TIMEOUT may be below the wake-up wait: waiting stays waiting (found by
    review: every wait ended as 'limiter unavailable')."""
    quick = redis.Redis.from_url(redis_url, socket_timeout=0.1)
    key = f"mlc:test:slots:{uuid.uuid4().hex}"
    limiter = RedisLimiter(quick, key, 1, lease_seconds=10, wait_seconds=5)
    held = limiter.try_acquire()
    timer = threading.Timer(0.6, lambda: limiter.release(held))
    timer.start()
    with limiter.slot():
        assert limiter.in_use() == 1
    timer.join()
    quick.close()
