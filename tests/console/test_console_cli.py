"""`mlc console user add|passwd|disable|list`: users in Postgres, scrypt hashes, audited."""

from __future__ import annotations

import io

import pytest

from tests.console.helpers import login

pytestmark = pytest.mark.integration


def mlc(monkeypatch, *args: str, stdin: str = "") -> int:
    from ops.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(list(args))


def test_user_add_passwd_disable(db_env, monkeypatch, capsys):
    from console import create_app
    from pipeline import db

    assert mlc(monkeypatch, "console", "user", "add", "cleo", "--role", "operator",
               "--password-stdin", stdin="first password 1\n") == 0
    with db.transaction() as cur:
        cur.execute("SELECT role, password_hash FROM console_users WHERE name = 'cleo'")
        row = cur.fetchone()
    assert row["role"] == "operator" and row["password_hash"].startswith("scrypt$32768$8$1$")
    assert "first password" not in row["password_hash"]
    client = create_app({"TESTING": True}).test_client()
    assert login(client, "cleo", "first password 1").status_code == 302
    # A new password ends the session it had; the old password no longer works.
    assert mlc(monkeypatch, "console", "user", "passwd", "cleo", "--role", "admin",
               "--password-stdin", stdin="second password 2\n") == 0
    assert client.get("/").status_code == 302
    assert login(client, "cleo", "first password 1").status_code == 401
    assert login(client, "cleo", "second password 2").status_code == 302
    assert client.get("/users").status_code == 200  # now an admin
    assert mlc(monkeypatch, "console", "user", "disable", "cleo") == 0
    assert client.get("/").status_code == 302
    assert mlc(monkeypatch, "console", "user", "list") == 0
    assert "cleo" in capsys.readouterr().out
    with db.transaction() as cur:
        cur.execute("SELECT detail->>'action' AS action, detail->>'by' AS by FROM audit_events"
                    " WHERE stage = 'console' AND detail->>'user' = 'cleo' ORDER BY id")
        actions = [r["action"] for r in cur.fetchall()]
    assert actions == ["user_add", "user_passwd", "user_disable"]


def test_refusals(db_env, monkeypatch, capsys):
    assert mlc(monkeypatch, "console", "user", "add", "dan", "--role", "viewer",
               "--password-stdin", stdin="short\n") == 1
    assert "at least 10 characters" in capsys.readouterr().err
    assert mlc(monkeypatch, "console", "user", "add", "dan", "--role", "viewer",
               "--password-stdin", stdin="long enough 123\n") == 0
    assert mlc(monkeypatch, "console", "user", "add", "dan", "--role", "viewer",
               "--password-stdin", stdin="long enough 123\n") == 1
    assert "exists" in capsys.readouterr().err
    assert mlc(monkeypatch, "console", "user", "disable", "nobody") == 1
