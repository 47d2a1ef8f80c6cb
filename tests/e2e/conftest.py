"""The end-to-end stack: sshd (from tests/conftest), the simulator as its own process, Redis,
Postgres and real Celery worker processes."""

from __future__ import annotations

import os

import pytest
import redis
import requests
from celery import Celery

from ops import status
from pipeline import connections, db
from sandbox.harness import Process, start_worker, start_x3sim

X3_PASSWORD = "x3-Sup3r-Secret-pw"


def summary() -> dict:
    with db.transaction() as cur:
        return status.summary(cur)


class NotSettled(dict):
    """The summary seen while waiting: falsy, so wait_for goes on, and shown if it times out."""

    def __bool__(self) -> bool:
        return False


def settled_with(n: int):
    def probe():
        s = summary()
        return s if sum(s["invoices"].values()) >= n and status.settled(s) else NotSettled(s)
    return probe


class Stack:
    def __init__(self, env: dict[str, str], url: str, sftp, tmp) -> None:
        self.env, self.url, self.sftp, self.tmp = env, url, sftp, tmp
        self.workers: list[Process] = []
        self.app = Celery("mlc-test-client", broker=env["CELERY_BROKER_URL"])

    def start_worker(self, concurrency: int = 2) -> Process:
        w = start_worker(self.env, self.tmp, name=f"worker{len(self.workers)}",
                         concurrency=concurrency)
        self.workers.append(w)
        return w

    @property
    def worker(self) -> Process:
        return self.workers[0]

    def poll(self) -> None:
        self.app.send_task("mlc.fetch_exports")

    def sim(self) -> dict:
        return requests.get(f"{self.url}/_sim/state", timeout=10).json()

    def faults(self, **faults) -> None:
        requests.post(f"{self.url}/_sim/faults", json=faults, timeout=10).raise_for_status()


@pytest.fixture
def stack_env(connected) -> dict[str, str]:
    """Override settings for a test by updating this dict before `stack` starts workers.

    X3 time-outs and the in-flight window are short here: a worker killed after marking an
    invoice `posting` but before its create left leaves nothing in X3, and that invoice waits
    out the whole window (default 600 s) before it is sent again."""
    return {**os.environ, **connected["env"], "MLC_LOG_LEVEL": "DEBUG",
            "MLC_X3_TIMEOUT": "5", "MLC_X3_DEADLINE": "8", "MLC_X3_INFLIGHT_WINDOW": "12",
            # Tables of `mlc` wrap to the terminal: wide enough that the texts the tests look
            # for stay on one line whatever the temporary paths (tests of wrapping set their own).
            "COLUMNS": "250"}


@pytest.fixture
def stack(connected, stack_env, tmp_path):
    env = stack_env
    redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()
    sim, url = start_x3sim(env, tmp_path, password=X3_PASSWORD)
    with db.transaction() as cur:
        connections.save(cur, "x3", "x3_rest", {"url": url, "folder": "SEED",
                                                "username": "admin"}, {"password": X3_PASSWORD})
    s = Stack(env, url, connected["sftp"], tmp_path)
    s.start_worker()
    yield s
    for w in s.workers:
        w.stop()
    sim.stop()
    s.app.close()
