"""Issue 12 end to end, without Celery: `mlc run-once` (a real process) posts the sample export
through a hostile proxy in front of the X3 simulator. The proxy answers the invoice creates
itself with pages that echo the Basic header and the password; nothing secret may reach the
process's output or any row of the database, and the refusal is still named."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading

import pytest

from pipeline import db
from sandbox import x3sim as sim
from sandbox.harness import configure_connections
from tests.conftest import drop_samples
from tests.hostile import hostile_server

pytestmark = pytest.mark.integration

PASSWORD = "Run-0nce-Hostile-pw!"  # noqa: S105
LOGIN = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
SECRETS = (PASSWORD, LOGIN, LOGIN.rstrip("="))


@pytest.fixture
def simulator():
    server = sim.make_server("127.0.0.1", 0, password=PASSWORD)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def proxy_script(upstream: str, create):
    """Forward everything to the simulator but the invoice creates, which `create` answers."""
    def script(h, seen):
        if seen.method == "POST" and "/BPSINVOICE" in seen.path:
            create(h, seen)
        else:
            h.forward(upstream, seen)
    return script


def refuse_echoing(h, seen):
    h.reply(400, {"$diagnoses": [
        {"$severity": "error", "$message": f"bad header {seen.headers['Authorization']}"},
        {"$severity": "error", "$message": f"password {PASSWORD} refused"}]})


def unavailable_echoing(h, seen):
    h.reply(503, f"<html><pre>{seen.headers['Authorization']}\n{LOGIN}</pre></html>",
            content_type="text/html", headers={"Retry-After": "120"})


def every_row() -> list[str]:
    with db.transaction() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables"
                    " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")
        tables = [r["table_name"] for r in cur.fetchall()]
        rows = []
        for table in tables:
            cur.execute(f'SELECT t::text AS row FROM "{table}" t')
            rows.extend(r["row"] for r in cur.fetchall())
    return rows


def run_once() -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ops.cli", "run-once"],
                          env=dict(os.environ, MLC_LOG_LEVEL="DEBUG"), capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("scenario", ["refused", "unavailable"])
def test_run_once_through_a_proxy_echoing_the_login(db_env, sftp_server, simulator, scenario):
    with hostile_server() as proxy:
        create = refuse_echoing if scenario == "refused" else unavailable_echoing
        proxy.answer(proxy_script(simulator, create))
        configure_connections(sftp_server, proxy.url, x3_password=PASSWORD)
        drop_samples(sftp_server.export_dir)
        first = run_once()  # the first poll only sees the files (stability check)
        assert first.returncode == 0 and "files fetched: 0" in first.stdout, first.stderr
        r = run_once()
        creates = [s for s in proxy.seen if s.method == "POST" and "BPSINVOICE" in s.path]
    assert creates, r.stdout + r.stderr
    assert creates[0].headers["Authorization"] == f"Basic {LOGIN}"
    shown = r.stdout + r.stderr
    for secret in SECRETS:
        assert secret not in shown, shown[-2000:]
    rows = every_row()
    for secret in SECRETS:
        leaked = [row[:300] for row in rows if secret in row]
        assert not leaked, leaked
    with db.transaction() as cur:
        cur.execute("SELECT status, last_error FROM invoices ORDER BY id")
        invoices = cur.fetchall()
    if scenario == "refused":
        assert r.returncode == 0, shown[-2000:]
        assert invoices and all(i["status"] == "failed" for i in invoices)
        assert invoices[0]["last_error"] == (
            "X3 refused the request (HTTP 400 Bad Request): bad header Basic ***; "
            "password *** refused")
    else:
        # run-once has no retries: the invoice fails with the reason (X3 said 503: nothing
        # was created) and the run goes on; the output names it, masked.
        assert r.returncode == 0, shown[-2000:]
        failed = [i for i in invoices if i["status"] == "failed"]
        assert failed and failed[0]["last_error"] == (
            "X3Unavailable: X3 unavailable (HTTP 503 Service Unavailable)")
        assert "failed" in r.stdout


def test_a_url_stored_with_userinfo_before_the_refusal_is_masked_and_refused(db_env):
    from pipeline import connections

    with db.transaction() as cur:  # as an older mlc stored it
        connections.save(cur, "x3", "x3_rest", {"url": f"https://admin:{PASSWORD}@x3.example",
                                                "folder": "SEED", "username": "admin"},
                         {"password": PASSWORD})
    env = dict(os.environ)
    shown = subprocess.run([sys.executable, "-m", "ops.cli", "connection", "show"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "https://***@x3.example" in shown.stdout
    check = subprocess.run([sys.executable, "-m", "ops.cli", "x3", "check"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode != 0
    assert check.stderr.strip() == ("mlc: the X3 URL must not hold a user name or password "
                                    "(https://***@x3.example): give them as the connection's "
                                    "user and secret instead")
    for secret in SECRETS:
        assert secret not in shown.stdout + shown.stderr + check.stdout + check.stderr
