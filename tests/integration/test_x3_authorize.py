"""`mlc x3 authorize`: the OAuth2 onboarding against the simulator's consent page and token
endpoint, as an operator runs it (a subprocess), with the person's browser played by the test."""

import os
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import psycopg2
import pytest
import requests

from sandbox.sftp import free_port

pytestmark = pytest.mark.integration


def mlc(*args, stdin=""):
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], input=stdin,
                          env=dict(os.environ), capture_output=True, text=True, timeout=60)


def authorize_args(sim, redirect, *extra):
    return ["x3", "authorize", "--url", sim, "--folder", "SEED", "--client-id", "demo",
            "--client-secret-stdin", "--token-url", f"{sim}/oauth/token",
            "--authorize-url", f"{sim}/oauth/authorize", "--redirect-uri", redirect, *extra]


class Authorize:
    """`mlc x3 authorize` running: its printed URL, then its outcome."""

    def __init__(self, sim, *extra, secret="demo-secret"):
        self.redirect = f"http://127.0.0.1:{free_port()}/callback"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", *authorize_args(sim, self.redirect, *extra)],
            env=dict(os.environ), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.proc.stdin.write(secret + "\n")
        self.proc.stdin.close()
        self.proc.stdin = None  # communicate() would flush it
        self.head = []
        for line in self.proc.stdout:  # the URL is printed once the listener is bound
            self.head.append(line)
            if line.startswith("http"):
                self.url = line.strip()
                break
        else:
            raise AssertionError(f"no URL printed: {self.head} {self.proc.stderr.read()}")

    def finish(self):
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, "".join(self.head) + out, err


@pytest.fixture
def running():
    started = []

    def start(*args, **kw):
        started.append(Authorize(*args, **kw))
        return started[-1]

    yield start
    for a in started:
        if a.proc.poll() is None:
            a.proc.kill()
            a.proc.wait()


def sim_get(sim, what):
    return requests.get(f"{sim}/_sim/{what}", timeout=5).json()


def rows(env):
    """Everything stored for the connection, as raw bytes: where no plaintext token may be."""
    with psycopg2.connect(env["DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT c.settings::text, c.secret, t.access_token FROM connections c"
                    " LEFT JOIN x3_tokens t ON t.connection = c.name")
        return [b"|".join(bytes(v) if isinstance(v, memoryview) else str(v).encode()
                          for v in row) for row in cur.fetchall()]


def stored_settings(env):
    with psycopg2.connect(env["DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT settings FROM connections WHERE name = 'x3'")
        row = cur.fetchone()
        return row[0] if row else None


def assert_no_plaintext_tokens(sim, env, *outputs):
    tokens = sim_get(sim, "tokens")
    secrets = tokens["refresh_tokens"] + tokens["access_tokens"] + ["demo-secret"]
    stored = b"\n".join(rows(env))
    for secret in secrets:
        assert secret.encode() not in stored
        for text in outputs:
            assert secret not in text


@pytest.mark.parametrize("mode", ["post", "json", "redirect"])
def test_callback_stores_tokens_and_calls_go_to_the_regional_endpoint(db_env, x3sim, running,
                                                                      mode):
    run = running(x3sim)
    sent = {k: v[-1] for k, v in parse_qs(urlsplit(run.url).query).items()}
    assert run.url.startswith(f"{x3sim}/oauth/authorize?")
    assert sent["client_id"] == "demo" and sent["scope"] == "api.graphQL"
    assert sent["customer"] == x3sim and sent["redirect_uri"] == run.redirect
    assert len(sent["state"]) >= 20
    browser = requests.get(f"{run.url}&sim_callback={mode}", timeout=10)
    assert browser.status_code == 200 and "authorised" in browser.text, browser.text
    code, out, err = run.finish()
    assert code == 0, out + err
    assert f"regional endpoint {x3sim}/eu" in out
    settings = stored_settings(db_env)
    assert settings["endpoint"] == f"{x3sim}/eu"
    assert settings["token_url"] == f"{x3sim}/eu/oauth/token" and settings["url"] == x3sim
    assert_no_plaintext_tokens(x3sim, db_env, out, err)
    # `mlc x3 check` authenticates afresh (issue 13): the stored refresh token is used at the
    # regional token endpoint, and the calls go to the regional endpoint (the simulator
    # refuses a regional token anywhere else).
    check = mlc("x3", "check", "--supplier", "ACME01", "--account", "6100")
    assert check.returncode == 0, check.stdout + check.stderr
    stats = sim_get(x3sim, "state")["stats"]
    assert stats["regional_calls"]["/eu/xtrem/api"] >= 2
    assert stats["code_exchanges"] == 1 and stats["token_refreshes"] == 1
    assert_no_plaintext_tokens(x3sim, db_env, check.stdout, check.stderr)


def test_state_mismatch_is_refused_and_nothing_stored(db_env, x3sim, running):
    run = running(x3sim)
    forged = run.url.replace("state=", "state=forged")
    browser = requests.get(forged, timeout=10)
    assert "state mismatch" in browser.text
    code, out, err = run.finish()
    assert code == 1
    assert "state does not match" in err and "nothing stored" in err
    assert rows(db_env) == []
    assert sim_get(x3sim, "state")["stats"]["code_exchanges"] == 0


def test_refused_consent_stores_nothing(db_env, x3sim, running):
    run = running(x3sim)
    requests.get(f"{run.url}&sim_consent=deny", timeout=10)
    code, _, err = run.finish()
    assert code == 1 and "did not authorise" in err and "access_denied" in err
    assert rows(db_env) == []


def test_no_callback_times_out_clearly(db_env, x3sim, running):
    run = running(x3sim, "--timeout", "0.3")
    code, _, err = run.finish()
    assert code == 1
    assert f"no callback on {run.redirect} within 0.3 s" in err
    assert rows(db_env) == []


def consented(sim, redirect):
    """A code delivered elsewhere (the person copies it from the browser's address bar)."""
    r = requests.get(f"{sim}/oauth/authorize", allow_redirects=False, timeout=5, params={
        "client_id": "demo", "redirect_uri": redirect, "state": "copied",
        "sim_callback": "redirect"})
    return {k: v[-1] for k, v in parse_qs(urlsplit(r.headers["Location"]).query).items()}


def test_code_pasted_on_a_headless_server(db_env, x3sim):
    redirect = "https://onboarding.example.com/callback"  # not this host: no listener
    given = consented(x3sim, redirect)
    args = authorize_args(x3sim, redirect, "--code", "-", "--endpoint", given["endpoint"])
    r = mlc(*args, stdin=f"demo-secret\n{given['authorizationCode']}\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Open this URL" not in r.stdout
    assert stored_settings(db_env)["endpoint"] == f"{x3sim}/eu"
    assert given["authorizationCode"] not in r.stdout + r.stderr
    assert_no_plaintext_tokens(x3sim, db_env, r.stdout, r.stderr)
    # Once the shared access token is gone, the refresh also goes to the regional endpoint.
    with psycopg2.connect(db_env["DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM x3_tokens")
    check = mlc("x3", "check", "--supplier", "ACME01")
    assert check.returncode == 0, check.stdout + check.stderr
    calls = sim_get(x3sim, "state")["stats"]["regional_calls"]
    assert calls["/eu/oauth/token"] == 2 and calls["/eu/xtrem/api"] >= 1
    # A code is single-use.
    again = mlc(*args, stdin=f"demo-secret\n{given['authorizationCode']}\n")
    assert again.returncode == 1 and "single-use" in again.stderr


def test_code_with_a_wrong_client_secret_is_refused(db_env, x3sim):
    redirect = "https://onboarding.example.com/callback"
    given = consented(x3sim, redirect)
    r = mlc(*authorize_args(x3sim, redirect, "--code", given["authorizationCode"],
                            "--endpoint", given["endpoint"]), stdin="not-the-secret\n")
    assert r.returncode == 1
    assert "invalid_client" in r.stderr and "nothing stored" in r.stderr
    assert "not-the-secret" not in r.stdout + r.stderr
    assert rows(db_env) == []


def test_home_region_callback_keeps_the_configured_urls(db_env, x3sim, running):
    run = running(x3sim)
    requests.get(f"{run.url}&sim_region=", timeout=10)
    code, out, err = run.finish()
    assert code == 0, out + err
    settings = stored_settings(db_env)
    assert "endpoint" not in settings and settings["token_url"] == f"{x3sim}/oauth/token"
    assert mlc("x3", "check").returncode == 0
    assert "/eu/xtrem/api" not in sim_get(x3sim, "state")["stats"]["regional_calls"]
