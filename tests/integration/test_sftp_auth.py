"""Authentication against a real sshd: key types, passphrases, passwords, refusals."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from pipeline import connections, db
from pipeline.audit import TaskContext
from pipeline.connections import Connection
from pipeline.stampli import poll, sftp
from sandbox.sftp import LocalSftp

pytestmark = pytest.mark.integration
CTX = TaskContext(task_id="test", attempt=1)
PASSWORD = "Corr3ct-Horse-Battery"


def keypair(path, key_type, passphrase=""):
    args = ["ssh-keygen", "-q", "-t", key_type, "-N", passphrase, "-f", str(path), "-C", "t"]
    if key_type == "ecdsa":
        args += ["-b", "256"]
    subprocess.run(args, check=True)
    return path.read_text(), (path.parent / f"{path.name}.pub").read_text()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    return {
        "rsa": keypair(d / "rsa", "rsa"),
        "ecdsa": keypair(d / "ecdsa", "ecdsa"),
        "ed25519": keypair(d / "ed25519", "ed25519"),
        "ed25519-passphrase": keypair(d / "edp", "ed25519", "s3cret phrase"),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory, keys):
    # Under /tmp itself: pytest's own temp root is 0700, closed to the password account.
    d = Path(tempfile.mkdtemp(prefix="mlc-sftp-"))
    d.chmod(0o755)
    password_user = ("mlcsftp", PASSWORD) if os.geteuid() == 0 else None
    s = LocalSftp(d / "export", state_dir=d / "state", password_user=password_user,
                  extra_public_keys=tuple(pub for _, pub in keys.values())).start()
    (s.export_dir / "invoices_1.csv").write_text("x\n")
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def conn_for(server, **secret):
    settings = server.connection_settings()
    if "password" in secret:
        settings["username"] = "mlcsftp"
    return Connection("stampli", "stampli_sftp", settings, secret)


@pytest.mark.parametrize("key_type", ["rsa", "ecdsa", "ed25519", "ed25519-passphrase"])
def test_key_auth(server, keys, key_type):
    secret = {"private_key": keys[key_type][0]}
    if key_type.endswith("passphrase"):
        secret["passphrase"] = "s3cret phrase"
    with sftp.open_sftp(conn_for(server, **secret)) as s:
        names = [f.name for f in sftp.list_files(s, str(server.export_dir), ("invoices_*",))]
    assert names == ["invoices_1.csv"]


def test_key_needing_a_passphrase_says_so(server, keys):
    with pytest.raises(sftp.SftpError, match="needs a passphrase"):
        with sftp.open_sftp(conn_for(server, private_key=keys["ed25519-passphrase"][0])):
            pass


@pytest.mark.skipif(os.geteuid() != 0, reason="password logins need a local account (root)")
def test_password_auth_and_wrong_password(server):
    with sftp.open_sftp(conn_for(server, password=PASSWORD)) as s:
        assert "invoices_1.csv" in s.listdir(str(server.export_dir))
    with pytest.raises(sftp.SftpError) as err:
        with sftp.open_sftp(conn_for(server, password="wrong")):
            pass
    assert "authentication as 'mlcsftp' refused" in str(err.value)
    assert "wrong" not in str(err.value) and PASSWORD not in str(err.value)


def test_unknown_host_key_refused_in_one_line(server, keys, tmp_path):
    _, other_pub = keypair(tmp_path / "other", "ed25519")
    settings = {**server.connection_settings(), "host_key": " ".join(other_pub.split()[:2])}
    conn = Connection("stampli", "stampli_sftp", settings, {"private_key": server.client_key_pem})
    with pytest.raises(sftp.HostKeyRefused) as err:
        with sftp.open_sftp(conn):
            pass
    assert "refusing to connect" in str(err.value) and "\n" not in str(err.value)


def test_unreachable_server_is_transient(server):
    settings = {**server.connection_settings(), "port": 1}
    conn = Connection("stampli", "stampli_sftp", settings, {"private_key": server.client_key_pem})
    with pytest.raises(sftp.SftpError) as err:
        with sftp.open_sftp(conn, timeout=3):
            pass
    assert err.value.transient


def test_poll_with_password_connection(db_env, server):
    if os.geteuid() != 0:
        pytest.skip("password logins need a local account (root)")
    c = conn_for(server, password=PASSWORD)
    with db.transaction() as cur:
        connections.save(cur, "stampli", c.kind, c.settings, c.secret)
    poll.poll(CTX)
    assert len(poll.poll(CTX).new_file_ids) == 1
