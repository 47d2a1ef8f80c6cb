"""Migrations on an empty database: once, twice, and two at the same time."""

import threading
import uuid

import psycopg2
import pytest

from pipeline import migrate
from tests.conftest import _admin, dsn_for

pytestmark = pytest.mark.integration


@pytest.fixture
def empty_db():
    name = f"mlc_m_{uuid.uuid4().hex[:10]}"
    _admin(f"CREATE DATABASE {name}")
    yield dsn_for(name)
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_upgrade_twice_applies_once(empty_db):
    first = migrate.upgrade(empty_db)
    assert first == [p.name for p in migrate.available()]
    assert migrate.upgrade(empty_db) == []
    assert migrate.applied(empty_db) == first


def test_concurrent_upgrades_apply_each_migration_once(empty_db):
    results, errors = [], []

    def run():
        try:
            results.append(migrate.upgrade(empty_db))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    applied = [name for r in results for name in r]
    assert sorted(applied) == [p.name for p in migrate.available()]


def test_audit_events_are_append_only(empty_db):
    migrate.upgrade(empty_db)
    conn = psycopg2.connect(empty_db)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("INSERT INTO audit_events (stage, outcome) VALUES ('poll', 'ok')")
        for sql in ("UPDATE audit_events SET outcome = 'error'", "DELETE FROM audit_events",
                    "TRUNCATE audit_events"):
            with pytest.raises(psycopg2.errors.RaiseException, match="append-only"):
                cur.execute(sql)
        cur.execute("SELECT outcome FROM audit_events")
        assert cur.fetchall() == [("ok",)]
    conn.close()
