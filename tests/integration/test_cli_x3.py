"""`mlc connection set x3 --transport graphql` and `mlc x3 check`, as an operator runs them."""

import os
import subprocess
import sys
import time

import psycopg2
import pytest
import requests

pytestmark = pytest.mark.integration


def mlc(*args, stdin=""):
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], input=stdin,
                          env=dict(os.environ), capture_output=True, text=True, timeout=60)


def set_oauth(x3sim, refresh_token="initial-rt"):
    return mlc("connection", "set", "x3", "--transport", "graphql", "--url", x3sim,
               "--folder", "SEED", "--client-id", "demo", "--client-secret-stdin",
               "--refresh-token-stdin", "--token-url", f"{x3sim}/oauth/token",
               stdin=f"demo-secret\n{refresh_token}\n")


def stored_secret(env):
    with psycopg2.connect(env["DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT secret FROM connections WHERE name = 'x3'")
        return bytes(cur.fetchone()[0])


def test_oauth_connection_set_and_check(db_env, x3sim):
    r = set_oauth(x3sim)
    assert r.returncode == 0, r.stderr
    assert b"demo-secret" not in stored_secret(db_env)
    assert b"initial-rt" not in stored_secret(db_env)
    shown = mlc("connection", "show")
    assert "demo-secret" not in shown.stdout and "initial-rt" not in shown.stdout
    check = mlc("x3", "check", "--supplier", "ACME01", "--account", "6100",
                "--dimension", "CCT=PLANT1")
    assert check.returncode == 0, check.stdout + check.stderr
    lines = check.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["ok"] * 4, check.stdout
    assert "supplier ACME01 found" in check.stdout
    for secret in ("demo-secret", "initial-rt"):
        assert secret not in check.stdout + check.stderr
    # The rotated refresh token was stored: a second run (new process) still authenticates,
    # with a token of its own (a check proves the credentials now, not a cached token).
    assert mlc("x3", "check").returncode == 0
    assert requests.get(f"{x3sim}/_sim/state", timeout=5).json()["stats"]["token_refreshes"] == 2


def test_check_reports_what_fails_and_exits_1(db_env, x3sim):
    assert set_oauth(x3sim).returncode == 0
    check = mlc("x3", "check", "--supplier", "NOPE01", "--account", "6100")
    assert check.returncode == 1
    assert "FAILED  supplier: supplier NOPE01 not found" in check.stdout
    assert "ok      account" in check.stdout


def test_refused_refresh_token_says_reauthorise(db_env, x3sim):
    assert set_oauth(x3sim, refresh_token="stale-token").returncode == 0
    check = mlc("x3", "check")
    assert check.returncode == 1
    assert "FAILED  authenticate" in check.stdout and "re-authorise" in check.stdout
    assert "stale-token" not in check.stdout + check.stderr
    # A person re-authorises: the new refresh token is stored and works at once.
    new = requests.post(f"{x3sim}/_sim/authorize", timeout=5).json()["refresh_token"]
    assert set_oauth(x3sim, refresh_token=new).returncode == 0
    assert mlc("x3", "check").returncode == 0


def test_connected_app_jwt_connection(db_env, x3sim):
    r = mlc("connection", "set", "x3", "--transport", "graphql", "--auth", "jwt", "--url", x3sim,
            "--client-id", "demo", "--client-secret-stdin", "--x3-user", "ADMIN",
            "--audience", "x3", stdin="demo-secret\n")
    assert r.returncode == 0, r.stderr
    check = mlc("x3", "check", "--account", "6100")
    assert check.returncode == 0, check.stdout + check.stderr


def test_missing_graphql_options_are_named(db_env):
    r = mlc("connection", "set", "x3", "--transport", "graphql", "--url", "https://x")
    assert r.returncode != 0
    for flag in ("--client-id", "--token-url", "--client-secret-stdin", "--refresh-token-stdin"):
        assert flag in r.stderr


def test_check_works_for_rest_too(db_env, x3sim):
    r = mlc("connection", "set", "x3", "--url", x3sim, "--username", "admin",
            "--password-stdin", stdin="admin\n")
    assert r.returncode == 0, r.stderr
    check = mlc("x3", "check", "--supplier", "ACME01")
    assert check.returncode == 0, check.stdout
    r = mlc("connection", "set", "x3", "--url", x3sim, "--username", "admin",
            "--password-stdin", stdin="wrong\n")
    check = mlc("x3", "check")
    assert check.returncode == 1 and "FAILED  supplier" in check.stdout


def faults(x3sim, **values):
    requests.post(f"{x3sim}/_sim/faults", json=values, timeout=5).raise_for_status()


def test_check_with_x3_down_fails_authenticate_despite_a_cached_token(db_env, x3sim):
    assert set_oauth(x3sim).returncode == 0
    assert mlc("x3", "check").returncode == 0  # a valid access token is now stored
    faults(x3sim, error_rate_503=1.0, retry_after=0)
    started = time.monotonic()
    check = mlc("x3", "check")
    assert check.returncode == 1
    assert "FAILED  authenticate" in check.stdout, check.stdout
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("transport", ["graphql", "rest"])
def test_check_rides_out_a_brief_503(db_env, x3sim, transport):
    if transport == "graphql":
        assert set_oauth(x3sim).returncode == 0
    else:
        assert mlc("connection", "set", "x3", "--url", x3sim, "--username", "admin",
                   "--password-stdin", stdin="admin\n").returncode == 0
    faults(x3sim, next_errors=[503] * 5, retry_after=0)  # more than one read's own retries
    check = mlc("x3", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("ok      authenticate"), check.stdout


def test_rest_check_authenticates_with_a_call(db_env, x3sim):
    assert mlc("connection", "set", "x3", "--url", x3sim, "--username", "admin",
               "--password-stdin", stdin="wrong\n").returncode == 0
    check = mlc("x3", "check")
    assert check.returncode == 1 and "FAILED  authenticate" in check.stdout, check.stdout
