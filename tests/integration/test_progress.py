"""Progress on a terminal for run-once, replay --failed and mapping import; quiet otherwise."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import pytest

from pipeline import db
from pipeline.audit import TaskContext
from pipeline.stampli import poll
from tests.conftest import drop_samples

pytestmark = pytest.mark.integration
CTX = TaskContext(task_id="test", attempt=1)


def mlc(*args: str, tty: bool) -> tuple[int, str, str]:
    """Run mlc with stderr on a pseudo-terminal (tty) or a pipe; (code, stdout, stderr)."""
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    argv = [sys.executable, "-m", "ops.cli", *args]
    if not tty:
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        return r.returncode, r.stdout, r.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=slave,
                            stdin=subprocess.DEVNULL, text=True)
    os.close(slave)
    out, _ = proc.communicate(timeout=120)
    err = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        err += chunk
    os.close(master)
    return proc.returncode, out, err.decode(errors="replace")


def test_mapping_import_progress(db_env, tmp_path):
    gl = tmp_path / "gl.csv"
    gl.write_text("stampli_code,x3_account\n" + "".join(f"{i},6{i:03d}\n" for i in range(3)))
    code, out, err = mlc("mapping", "import", "gl", str(gl), tty=True)
    assert code == 0, err
    assert "mapping import gl: 3/3 rows" in err and "\x1b[K" in err
    assert "gl: 3 row(s) mapped" in out
    code, out, err = mlc("mapping", "import", "gl", str(gl), tty=False)
    assert code == 0 and err == "" and "3 row(s) mapped" in out


def test_run_once_progress_and_summary(connected):
    drop_samples(connected["sftp"].export_dir)
    poll.poll(CTX)  # the files are listed once; the run-once poll finds them stable
    code, out, err = mlc("run-once", tty=True)
    assert code == 0, out + err
    assert "run-once: polling the export" in err
    assert "run-once: file 2/2: invoice 3/3" in err, repr(err)
    assert "files fetched: 2" in out and "invoices: 3, 3 posted" in out, out


def test_run_once_is_quiet_without_a_terminal(connected):
    code, out, err = mlc("run-once", tty=False)
    assert code == 0 and err == "", err
    assert "invoices: 0" in out


def test_replay_failed_progress(db_env):
    with db.transaction() as cur:
        cur.execute("INSERT INTO source_files (connection, path, kind, size, mtime, sha256,"
                    " content, status) VALUES ('stampli','f.csv','invoices',1,0,'x','',"
                    "'parsed') RETURNING id")
        fid = cur.fetchone()["id"]
        for n in range(2):
            cur.execute("INSERT INTO invoices (source_file_id, stampli_vendor_id,"
                        " invoice_number, status, payload, payload_sha256) VALUES"
                        " (%s, 'v-1', %s, 'failed', %s, 'h')",
                        (fid, f"n-{n}", json.dumps({"vendor_id": "V-1",
                                                     "invoice_number": f"N-{n}"})))
    import redis

    redis.Redis.from_url(db_env["CELERY_BROKER_URL"]).delete("celery")
    code, out, err = mlc("replay", "--failed", "--reason", "test", tty=True)
    assert code == 0, err
    assert "replay: enqueued: 2/2 invoices" in err
    assert out.startswith("replaying 2 invoice(s)")
    assert redis.Redis.from_url(db_env["CELERY_BROKER_URL"]).llen("celery") == 2
    redis.Redis.from_url(db_env["CELERY_BROKER_URL"]).delete("celery")
