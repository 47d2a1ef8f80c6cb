"""`mlc connection set/show/test` and `mlc secrets rotate`: secrets stay encrypted and unseen."""

import os
import subprocess
import sys

import psycopg2
import pytest
from cryptography.fernet import Fernet

pytestmark = pytest.mark.integration


def mlc(*args, env, stdin=""):
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=60)


def stored_secret(env, name):
    with psycopg2.connect(env["DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT secret FROM connections WHERE name = %s", (name,))
        return bytes(cur.fetchone()[0])


def test_set_show_test_and_rotate(db_env, sftp_server, tmp_path):
    env = dict(os.environ)
    key_file = sftp_server.client_key_path
    r = mlc("connection", "set", "stampli", "--host", "127.0.0.1", "--port",
            str(sftp_server.port), "--username", sftp_server.username, "--remote-dir",
            str(sftp_server.export_dir), "--key-file", str(key_file), "--host-key",
            sftp_server.host_key_line, env=env)
    assert r.returncode == 0, r.stderr
    r = mlc("connection", "set", "x3", "--url", "http://127.0.0.1:1", "--username", "admin",
            "--password-stdin", env=env, stdin="x3-Pa55word\n")
    assert r.returncode == 0, r.stderr
    assert b"x3-Pa55word" not in stored_secret(env, "x3")
    assert b"PRIVATE KEY" not in stored_secret(env, "stampli")

    shown = mlc("connection", "show", env=env)
    assert "x3-Pa55word" not in shown.stdout and "PRIVATE" not in shown.stdout
    assert "secret=stored (encrypted)" in shown.stdout

    (sftp_server.export_dir / "invoices_20261101000000.csv").write_text("a,b\n")
    tested = mlc("connection", "test", "stampli", env=env)
    assert tested.returncode == 0, tested.stderr
    assert "host key verified" in tested.stdout and "invoices_20261101000000.csv" in tested.stdout

    # Rotation: a new key first, the old one still listed; afterwards the old key can go.
    new_key = Fernet.generate_key().decode()
    env_both = dict(env, MLC_SECRET_KEYS=f"{new_key},{env['MLC_SECRET_KEYS']}")
    before = stored_secret(env, "x3")
    r = mlc("secrets", "rotate", env=env_both)
    assert r.returncode == 0 and "re-encrypted 2 secret(s)" in r.stdout
    assert stored_secret(env, "x3") != before
    only_new = dict(env, MLC_SECRET_KEYS=new_key)
    assert mlc("connection", "test", "stampli", env=only_new).returncode == 0


def test_changed_host_key_fails_the_test_command_in_one_line(db_env, sftp_server, tmp_path):
    env = dict(os.environ)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)
    other = " ".join((tmp_path / "k.pub").read_text().split()[:2])
    mlc("connection", "set", "stampli", "--host", "127.0.0.1", "--port", str(sftp_server.port),
        "--username", sftp_server.username, "--key-file", str(sftp_server.client_key_path),
        "--host-key", other, env=env)
    r = mlc("connection", "test", "stampli", env=env)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "refusing to connect" in r.stderr


def test_x3_credentials_never_configured_over_plain_http(db_env):
    env = dict(os.environ)
    r = mlc("connection", "set", "x3", "--url", "http://x3.example.com", "--username", "admin",
            "--password-stdin", env=env, stdin="pw\n")
    assert r.returncode != 0 and "must be an https URL" in r.stderr
    ok = mlc("connection", "set", "x3", "--url", "https://x3.example.com", "--username",
             "admin", "--password-stdin", env=env, stdin="pw\n")
    assert ok.returncode == 0, ok.stderr
