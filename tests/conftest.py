"""Real services for tests: a Postgres database per test (cloned from a migrated template), a
Redis db number per session, sshd and the X3 simulator started by fixtures."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest
from cryptography.fernet import Fernet

ADMIN_DSN = os.environ.get("MLC_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("MLC_TEST_REDIS", "redis://127.0.0.1:6379")
SAMPLES = Path(__file__).resolve().parent.parent / "sandbox" / "data"
RUN_ID = uuid.uuid4().hex[:8]


def _admin(sql: str) -> None:
    conn = psycopg2.connect(ADMIN_DSN)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def dsn_for(name: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def secret_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture(scope="session")
def redis_url() -> str:
    # One Redis db number per session (1..13; 14 is the demo's), so parallel runs do not collide;
    # pytest-xdist's workers of one run take consecutive numbers.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw"):
        return f"{REDIS_BASE}/{1 + (os.getppid() + int(worker[2:])) % 13}"
    return f"{REDIS_BASE}/{1 + os.getpid() % 13}"


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    from pipeline import migrate

    name = f"mlc_tpl_{RUN_ID}"
    _admin(f"CREATE DATABASE {name}")
    migrate.upgrade(dsn_for(name))
    yield name
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def _database_env(template_db: str, secret_key: str, redis_url: str,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    from pipeline import db, ledger, validation
    from pipeline.config import settings

    name = f"mlc_t_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    _admin(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    env = {"DATABASE_URL": dsn_for(name), "MLC_SECRET_KEYS": secret_key,
           "CELERY_BROKER_URL": redis_url, "MLC_STABILITY_RECHECK": "1",
           "MLC_LOG_LEVEL": "INFO"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings.cache_clear()
    ledger.layout.cache_clear()
    validation.forget()  # X3 codes confirmed for an earlier test's simulator
    yield env
    db.close_pools()
    settings.cache_clear()
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def db_env(template_db: str, secret_key: str, redis_url: str,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A fresh migrated database for this test, and the environment that points at it."""
    with _database_env(template_db, secret_key, redis_url, monkeypatch) as env:
        yield env


@pytest.fixture(scope="module")
def module_db_env(template_db: str, secret_key: str, redis_url: str) -> Iterator[dict[str, str]]:
    """One database for a module whose tests clean up what they share (saves ~0.3 s a test)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        with _database_env(template_db, secret_key, redis_url, monkeypatch) as env:
            yield env


@pytest.fixture(autouse=True)
def _pooled_connections_come_back_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test that uses the database: each connection of this process's pools is back
    in its pool, not in autocommit, outside any transaction, and holds no advisory lock."""
    used = [name for name in ("db_env", "module_db_env") if name in request.fixturenames]
    if not used:
        yield
        return
    # Requested from here so that this check runs before the database fixture tears down.
    env = request.getfixturevalue(used[0])
    yield
    problems = pool_problems(env["DATABASE_URL"])
    assert not problems, "a pooled connection came back dirty:\n  " + "\n  ".join(problems)


def pool_problems(admin_dsn: str) -> list[str]:
    from psycopg2 import extensions

    from pipeline import db, locks

    problems, pids = [], {}
    for (pid, _dsn), pool in list(db._pools.items()):
        if pid != os.getpid() or pool.closed:
            continue
        for conn in list(pool._used.values()):
            problems.append(f"connection {conn.info.backend_pid} was never given back")
            pids[conn.info.backend_pid] = conn
        for conn in list(pool._pool):
            if conn.closed:
                continue
            backend = conn.info.backend_pid
            pids[backend] = conn
            if conn.autocommit:
                problems.append(f"connection {backend} is in autocommit")
            if conn.info.transaction_status != extensions.TRANSACTION_STATUS_IDLE:
                problems.append(f"connection {backend} is inside a transaction "
                                f"(status {conn.info.transaction_status})")
    if pids:
        held = psycopg2.connect(admin_dsn)
        try:
            with held.cursor() as cur:
                cur.execute("SELECT pid, classid, objid, objsubid FROM pg_locks"
                            " WHERE locktype = 'advisory' AND pid = ANY(%s)", (list(pids),))
                for pid, classid, objid, objsubid in cur.fetchall():
                    problems.append(f"connection {pid} holds advisory lock "
                                    f"{locks.describe(classid, objid, objsubid)}")
        finally:
            held.close()
    return problems



@pytest.fixture
def x3sim() -> Iterator[str]:
    """The X3 simulator in a thread of this process; yields its base URL."""
    from sandbox import x3sim as sim

    server = sim.make_server("127.0.0.1", 0)
    # A short poll interval: shutdown() waits up to one, and this fixture runs per test.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def sftp_server(tmp_path: Path) -> Iterator[object]:
    from sandbox.sftp import LocalSftp

    server = LocalSftp(tmp_path / "export", state_dir=tmp_path / "sshd").start()
    yield server
    server.stop()


@pytest.fixture
def connected(db_env: dict[str, str], sftp_server: object, x3sim: str) -> dict[str, object]:
    """Connections `stampli` (key auth, pinned host key) and `x3` (REST) stored in the db."""
    from sandbox.harness import configure_connections

    configure_connections(sftp_server, x3sim)
    return {"env": db_env, "sftp": sftp_server, "x3": x3sim}


def drop_samples(export_dir: Path) -> None:
    for name in ("vendors_20261103101500.csv", "invoices_20261103101500.csv"):
        shutil.copy(SAMPLES / name, export_dir / name)
