"""Every `mlc` command, and the worker and beat, turn bad input and unreachable services into one
line on stderr (what, where, what to do) and exit 2, within seconds: never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import _admin, dsn_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MISSING_DB = dsn_for("mlc_no_such_database")
DEAD_REDIS = "redis://127.0.0.1:1/0"


def run(*argv: str, env: dict[str, str], program: tuple[str, ...] = ("-m", "ops.cli"),
        timeout: float = 20, cwd: Path = ROOT) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    r = subprocess.run([sys.executable, *program, *argv], env=env, capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)
    return r, time.monotonic() - started


def assert_one_line(r: subprocess.CompletedProcess, elapsed: float, *needles: str,
                    seconds: float = 8) -> None:
    err = r.stderr.strip()
    shown = f"exit {r.returncode} after {elapsed:.1f}s\nstderr:\n{r.stderr}\nstdout:\n{r.stdout}"
    assert r.returncode == 2, shown
    assert "Traceback" not in r.stderr + r.stdout, shown
    assert err and "\n" not in err, shown
    assert elapsed < seconds, shown
    for needle in needles:
        assert needle in err, shown


@pytest.fixture
def env(db_env):
    return {**os.environ, **db_env}


@pytest.fixture
def empty_db(env):
    """A database that exists but was never migrated."""
    name = f"mlc_empty_{uuid.uuid4().hex[:8]}"
    _admin(f"CREATE DATABASE {name}")
    yield {**env, "DATABASE_URL": dsn_for(name)}
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_report_since_is_not_a_date(env):
    assert_one_line(*run("report", "--since", "2026-13-01", env=env), "--since", "YYYY-MM-DD")


def test_replay_since_is_not_a_date(env):
    assert_one_line(*run("replay", "--failed", "--since", "yesterday", env=env),
                    "'yesterday'", "YYYY-MM-DD")


def test_mapping_import_with_a_wrong_header(env, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("code,account\n6500,601100\n")
    assert_one_line(*run("mapping", "import", "gl", str(bad), env=env),
                    "bad.csv", "stampli_code,x3_account", "found code,account")


def test_mapping_import_of_a_missing_file(env):
    assert_one_line(*run("mapping", "import", "gl", "missing.csv", env=env), "missing.csv",
                    "No such file")


def test_mapping_import_dimension_needs_a_type(env):
    assert_one_line(*run("mapping", "import", "dimension", "projects.csv", env=env),
                    "TYPE FILE")


def test_mapping_list_on_a_database_never_migrated(empty_db):
    assert_one_line(*run("mapping", "list", env=empty_db), "not migrated", "mlc db upgrade")


def test_connection_set_with_a_missing_key_file(env):
    assert_one_line(*run("connection", "set", "stampli", "--host", "h", "--username", "u",
                         "--host-key", "ssh-ed25519 AAAA", "--key-file", "/nope", env=env),
                    "/nope", "No such file")


def test_connection_show_with_a_missing_database(env):
    assert_one_line(*run("connection", "show", env={**env, "DATABASE_URL": MISSING_DB}),
                    "mlc_no_such_database", "does not exist", "DATABASE_URL")


def test_connection_test_without_a_connection(env):
    assert_one_line(*run("connection", "test", env=env), "no connection named 'stampli'",
                    "mlc connection set stampli")


def test_db_upgrade_with_a_missing_database(env):
    assert_one_line(*run("db", "upgrade", env={**env, "DATABASE_URL": MISSING_DB}),
                    "does not exist")


def test_status_with_a_missing_database(env):
    assert_one_line(*run("status", env={**env, "DATABASE_URL": MISSING_DB}),
                    "cannot use the database", "does not exist")


def test_postgres_not_listening(env):
    port = _free_port()
    assert_one_line(*run("failed", env={**env,
                                        "DATABASE_URL": f"postgresql://u@127.0.0.1:{port}/x"}),
                    f"127.0.0.1:{port}", "DATABASE_URL")


def test_x3_check_without_a_connection(env):
    assert_one_line(*run("x3", "check", env=env), "no connection named 'x3'")


def test_x3_authorize_over_plain_http(env):
    assert_one_line(*run("x3", "authorize", "--url", "http://x3.example.com", "--client-id",
                         "c", "--client-secret-stdin", "--token-url", "https://t.example",
                         "--redirect-uri", "http://127.0.0.1:8765/cb", env=env), "https")


def test_secrets_rotate_with_an_invalid_key(env):
    assert_one_line(*run("secrets", "rotate", env={**env, "MLC_SECRET_KEYS": "not-a-key"}),
                    "MLC_SECRET_KEYS", "not a valid Fernet key")


def test_settings_problems_are_one_line(env):
    r, t = run("status", env={**env, "MLC_POLL_INTERVAL": "1", "MLC_SECRET_KEYS": "x"})
    assert_one_line(r, t, "MLC_POLL_INTERVAL", "MLC_SECRET_KEYS")


def test_poll_with_redis_down_is_fast_and_quiet(env):
    r, t = run("poll", env={**env, "CELERY_BROKER_URL": DEAD_REDIS})
    assert_one_line(r, t, "Redis", "127.0.0.1:1", "CELERY_BROKER_URL", seconds=5)
    assert "backend" not in r.stderr.lower()


def test_replay_with_redis_down(env):
    from pipeline import db

    with db.transaction() as cur:  # one failed invoice to replay
        cur.execute("INSERT INTO source_files (connection, path, kind, size, mtime, sha256,"
                    " content, status) VALUES ('stampli','f.csv','invoices',1,0,'x','',"
                    "'parsed') RETURNING id")
        fid = cur.fetchone()["id"]
        cur.execute("INSERT INTO invoices (source_file_id, stampli_vendor_id, invoice_number,"
                    " status, payload, payload_sha256) VALUES (%s,'v-1','n-1','failed',"
                    "'{\"vendor_id\":\"V-1\",\"invoice_number\":\"N-1\"}','h')", (fid,))
    r, t = run("replay", "--failed", env={**env, "CELERY_BROKER_URL": DEAD_REDIS})
    assert_one_line(r, t, "Redis", seconds=5)


def test_run_once_without_connections(env):
    assert_one_line(*run("run-once", env=env), "no connection named")


def test_failed_and_audit_on_a_database_never_migrated(empty_db):
    assert_one_line(*run("failed", env=empty_db), "mlc db upgrade")


def test_audit_invoice_needs_two_keys(env):
    assert_one_line(*run("audit", "invoice", "V-1", env=env), "VENDOR_ID INVOICE_NUMBER")


def test_health_with_invalid_settings(env):
    assert_one_line(*run("health", env={**env, "DATABASE_URL": "mysql://x"}), "DATABASE_URL")


def test_metrics_with_a_missing_database(env):
    assert_one_line(*run("metrics", env={**env, "DATABASE_URL": MISSING_DB}), "does not exist")


def test_metrics_port_not_a_number(env):
    assert_one_line(*run("metrics", "--serve", "--port", "web", env=env), "--port")


def test_sandbox_x3_on_a_port_in_use(env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_one_line(*run("sandbox", "x3", "--port", str(port), env=env),
                        "Address already in use")


def test_sandbox_sftp_needs_a_dir(env):
    assert_one_line(*run("sandbox", "sftp", env=env), "--dir")


def test_demo_with_postgres_unreachable(env):
    port = _free_port()
    assert_one_line(*run("demo", env={**env, "MLC_ADMIN_DSN":
                                      f"postgresql://postgres@127.0.0.1:{port}/postgres"}),
                    "PostgreSQL is not reachable", "MLC_ADMIN_DSN")


def test_unknown_command_is_one_line(env):
    assert_one_line(*run("frobnicate", env=env), "invalid choice")


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_celery_process_with_invalid_settings(env, role, tmp_path):
    r, t = run("-A", "workers", role, program=("-m", "celery"),
               env={**env, "MLC_POLL_INTERVAL": "1"}, cwd=tmp_path if role == "beat" else ROOT)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "mlc " in ln]
    assert lines == [lines[0]] and "MLC_POLL_INTERVAL" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and t < 10, r.stderr


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_celery_process_with_a_missing_database(env, role, tmp_path):
    schedule = tmp_path / "schedule"
    argv = ["-A", "workers", role] + ([f"--schedule={schedule}"] if role == "beat" else [])
    r, t = run(*argv, program=("-m", "celery"), env={**env, "DATABASE_URL": MISSING_DB},
               cwd=ROOT)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and t < 10, r.stderr
    assert f"mlc {role}: cannot use the database" in r.stderr, r.stderr


def test_worker_on_a_database_never_migrated(empty_db):
    r, t = run("-A", "workers", "worker", program=("-m", "celery"), env=empty_db)
    assert r.returncode == 2 and "mlc db upgrade" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and t < 10, r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_poll_with_redis_up_queues_one_fetch(env):
    import json

    import redis

    client = redis.Redis.from_url(env["CELERY_BROKER_URL"])
    client.delete("celery")
    r, _ = run("poll", env=env)
    assert r.returncode == 0 and r.stdout.startswith("poll queued: task "), r.stderr
    (message,) = client.lrange("celery", 0, -1)
    assert json.loads(message)["headers"]["task"] == "mlc.fetch_exports"
    client.delete("celery")


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_celery_process_with_redis_down(env, role, tmp_path):
    argv = ["-A", "workers", role] + ([f"--schedule={tmp_path / 's'}"] if role == "beat" else [])
    r, t = run(*argv, program=("-m", "celery"), env={**env, "CELERY_BROKER_URL": DEAD_REDIS})
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"mlc {role}: cannot reach Redis" in r.stderr and "Traceback" not in r.stderr
    assert t < 10, r.stderr[-2000:]
