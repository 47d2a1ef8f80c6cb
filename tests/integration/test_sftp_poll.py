"""Polling a real sshd: pinned host keys, stability, dedup across polls."""

import os
import subprocess
import sys

import pytest

from pipeline import connections, db, locks
from pipeline.audit import TaskContext
from pipeline.config import settings
from pipeline.stampli import poll
from tests.conftest import SAMPLES, drop_samples

pytestmark = pytest.mark.integration
CTX = TaskContext(task_id="test", attempt=1)


def test_files_taken_once_stable_vendors_first_and_only_once(connected):
    export = connected["sftp"].export_dir
    drop_samples(export)
    first = poll.poll(CTX)
    assert first.new_file_ids == [] and sorted(first.waiting) == [
        "invoices_20261103101500.csv", "vendors_20261103101500.csv"]
    second = poll.poll(CTX)
    assert len(second.new_file_ids) == 2
    with db.transaction() as cur:
        cur.execute("SELECT id, kind, status FROM source_files ORDER BY id")
        rows = cur.fetchall()
    assert [r["kind"] for r in rows] == ["vendors", "invoices"]
    assert all(r["status"] == "fetched" for r in rows)
    third = poll.poll(CTX)
    assert third.new_file_ids == [] and third.waiting == []


def test_changed_host_key_is_refused_and_audited(connected):
    from sandbox.sftp import _keygen

    other = connected["sftp"].state_dir / "other_key"
    _keygen(other)
    pinned = " ".join((other.parent / "other_key.pub").read_text().split()[:2])
    with db.transaction() as cur:
        conn = connections.load(cur, "stampli")
        connections.save(cur, "stampli", conn.kind, {**conn.settings, "host_key": pinned},
                         conn.secret)
    result = poll.poll(CTX)
    assert result.error is not None and "refusing to connect" in result.error
    assert "\n" not in result.error
    with db.transaction() as cur:
        cur.execute("SELECT outcome, detail FROM audit_events WHERE stage = 'file_fetch'")
        (row,) = cur.fetchall()
    assert row["outcome"] == "error" and "refusing" in row["detail"]["error"]


def test_a_second_poll_is_locked_out_while_one_runs(connected):
    with locks.held(locks.poll()):
        assert poll.poll(CTX).locked_out


def _statuses():
    with db.transaction() as cur:
        cur.execute("SELECT path, remote_path, status, error,"
                    " coalesce(content, lo_get(content_oid)) AS content FROM source_files"
                    " ORDER BY id")
        return cur.fetchall()


def test_growing_file_is_not_taken_until_stable(connected):
    export = connected["sftp"].export_dir
    target = export / "invoices_20261103101500.csv"
    full = (SAMPLES / "invoices_20261103101500.csv").read_bytes()
    target.write_bytes(full[:100])
    assert poll.poll(CTX).waiting == [target.name]
    with target.open("ab") as fh:
        fh.write(full[100:250])
    assert poll.poll(CTX).new_file_ids == []  # grew since the last listing: still waiting
    with target.open("ab") as fh:
        fh.write(full[250:])
    assert poll.poll(CTX).new_file_ids == []
    assert len(poll.poll(CTX).new_file_ids) == 1
    (row,) = _statuses()
    assert bytes(row["content"]) == full


def test_done_marker_mode_takes_marked_files_at_once(connected, monkeypatch):
    monkeypatch.setenv("MLC_STABILITY", "done_marker")
    settings.cache_clear()
    export = connected["sftp"].export_dir
    drop_samples(export)
    assert poll.poll(CTX).new_file_ids == []
    (export / "vendors_20261103101500.csv.done").write_text("")
    assert len(poll.poll(CTX).new_file_ids) == 1


def test_processed_move_and_repoll_from_a_new_process(connected, monkeypatch):
    monkeypatch.setenv("MLC_AFTER_DOWNLOAD", "move")
    settings.cache_clear()
    export = connected["sftp"].export_dir
    drop_samples(export)
    poll.poll(CTX)
    assert len(poll.poll(CTX).new_file_ids) == 2
    assert sorted(p.name for p in (export / "processed").iterdir()) == [
        "invoices_20261103101500.csv", "vendors_20261103101500.csv"]
    assert all(r["remote_path"].startswith(str(export / "processed")) for r in _statuses())
    # A restarted worker is a new process with only Postgres to go on: it fetches nothing,
    # even when the same bytes are uploaded again.
    drop_samples(export)
    code = ("from pipeline.stampli import poll; from pipeline.audit import TaskContext as T;"
            "rs = [poll.poll(T('restarted', 1)) for _ in range(3)];"
            "print(sum(len(r.new_file_ids) for r in rs))")
    out = subprocess.run([sys.executable, "-c", code], env=os.environ, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "0"
    assert len(_statuses()) == 2


def test_file_over_the_cap_is_rejected_with_a_reason(connected, monkeypatch):
    monkeypatch.setenv("MLC_MAX_FILE_MB", "1")
    settings.cache_clear()
    big = connected["sftp"].export_dir / "invoices_20261104000000.csv"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    poll.poll(CTX)
    assert poll.poll(CTX).new_file_ids == []
    (row,) = _statuses()
    assert row["status"] == "rejected"
    assert row["error"] == f"{big} is larger than the 1 MB cap"
    assert poll.poll(CTX).new_file_ids == [] and len(_statuses()) == 1  # not retried each poll


def test_unparseable_file_goes_to_failed_and_poll_goes_on(connected):
    from pipeline import ledger

    export = connected["sftp"].export_dir
    (export / "invoices_20261105000000.csv").write_bytes(b"\xff\xfe garbage \x00\x81\n")
    drop_samples(export)
    poll.poll(CTX)
    ids = poll.poll(CTX).new_file_ids
    assert len(ids) == 3
    outcomes = {i: ledger.parse_file(CTX, i).status for i in ids}
    bad = [i for i, s in outcomes.items() if s == "rejected"]
    assert len(bad) == 1 and sorted(outcomes.values()) == ["parsed", "parsed", "rejected"]
    moved = poll.quarantine(CTX, bad[0])
    assert moved == str(export / "failed" / "invoices_20261105000000.csv")
    assert (export / "failed" / "invoices_20261105000000.csv").exists()


def test_a_file_failing_mid_download_does_not_stop_the_others(connected, monkeypatch):
    from pipeline.stampli import sftp as sftp_mod

    drop_samples(connected["sftp"].export_dir)
    poll.poll(CTX)
    real = sftp_mod.download

    def flaky(sftp, path, dest, cap):
        if path.endswith("vendors_20261103101500.csv"):
            raise OSError("Socket is closed")
        return real(sftp, path, dest, cap)

    monkeypatch.setattr(sftp_mod, "download", flaky)
    assert len(poll.poll(CTX).new_file_ids) == 1  # the invoice file still came in
    monkeypatch.setattr(sftp_mod, "download", real)
    assert len(poll.poll(CTX).new_file_ids) == 1  # and the vendor file on the next poll
    with db.transaction() as cur:
        cur.execute("SELECT detail FROM audit_events WHERE stage = 'file_fetch'"
                    " AND outcome = 'error'")
        (row,) = cur.fetchall()
    assert "Socket is closed" in row["detail"]["reason"]


def _fetch_and_parse_in_a_fresh_process(tag):
    code = (
        "from pipeline.stampli import poll; from pipeline import ledger;"
        f"from pipeline.audit import TaskContext as T; ctx = T('{tag}', 1); poll.poll(ctx);"
        "ids = poll.poll(ctx).new_file_ids;"
        "n = sum(len(ledger.parse_file(ctx, i).invoice_ids) for i in ids);"
        "peak = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')];"
        "print(n, peak[0] * 1024)")
    out = subprocess.run([sys.executable, "-c", code], env=os.environ, capture_output=True,
                         text=True, check=True, timeout=240).stdout
    return tuple(map(int, out.split()))


def test_a_large_export_is_fetched_and_parsed_in_flat_memory(connected):
    """The file lives in a Postgres large object, streamed in and out: fetching and parsing a
    ~15 MB export costs a process far less extra memory than the file's size."""
    from sandbox.generate import generate

    export = connected["sftp"].export_dir
    generate(export, invoices=500, lines=5, vendors=50, prefix="SML", stamp="20261110110000")
    small_n, small_peak = _fetch_and_parse_in_a_fresh_process("small")
    for p in export.glob("*.csv"):
        p.unlink()
    generate(export, invoices=20_000, lines=5, vendors=50, prefix="BIG")
    size = sum(p.stat().st_size for p in export.glob("*.csv"))
    big_n, big_peak = _fetch_and_parse_in_a_fresh_process("big")
    assert (small_n, big_n) == (500, 20_000)
    with db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM source_files WHERE content IS NULL"
                    " AND content_oid IS NOT NULL")
        assert cur.fetchone()["n"] == 4
    # Holding the file whole even once (the bytes, before a parse copy) would grow the
    # process by at least its size; streaming grows it by the per-invoice counts only.
    growth = big_peak - small_peak
    assert growth < size, (f"peak RSS grew {growth / 2**20:.0f} MB for a"
                           f" {size / 2**20:.0f} MB export")


def test_hostile_remote_names_are_refused_audited_never_taken_or_moved(connected, monkeypatch):
    monkeypatch.setenv("MLC_AFTER_DOWNLOAD", "move")
    monkeypatch.setenv("MLC_STABILITY", "done_marker")
    settings.cache_clear()
    export = connected["sftp"].export_dir
    good = (SAMPLES / "invoices_20261103101500.csv").read_bytes()
    hostile = [b"invoices_a\nb.csv", b"invoices_\x1b[2J.csv", b"invoices_..csv",
               b"invoices_a\\b.csv", b"invoices_\xff.csv"]
    for name in [*hostile, b"invoices_ok.csv"]:
        path = os.path.join(os.fsencode(export), name)
        with open(path, "wb") as fh:
            fh.write(good if name.endswith(b"ok.csv") else good.replace(b"INV", b"HOST"))
        open(path + b".done", "wb").close()
    result = poll.poll(CTX)
    assert result.error is None and len(result.new_file_ids) == 1
    with db.transaction() as cur:
        cur.execute("SELECT path FROM source_files")
        assert [r["path"] for r in cur.fetchall()] == [f"{export}/invoices_ok.csv"]
        cur.execute("SELECT detail FROM audit_events WHERE stage = 'file_fetch'"
                    " AND outcome = 'error' ORDER BY id")
        refused = [r["detail"] for r in cur.fetchall()]
    assert sorted(d["name"] for d in refused) == sorted(
        ["invoices_a\\nb.csv", "invoices_\\x1b[2J.csv", "invoices_..csv", "invoices_a\\\\b.csv",
         "invoices_\\udcff.csv"])
    reasons = {d["name"]: d["reason"] for d in refused}
    assert "control" in reasons["invoices_a\\nb.csv"]
    assert "'..'" in reasons["invoices_..csv"]
    assert "separator" in reasons["invoices_a\\\\b.csv"]
    assert "UTF-8" in reasons["invoices_\\udcff.csv"]
    for name in hostile:  # left where they were: never downloaded, never moved
        assert os.path.exists(os.path.join(os.fsencode(export), name))
    again = poll.poll(CTX)  # audited once, not every poll
    assert again.error is None
    with db.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM audit_events WHERE stage = 'file_fetch'"
                    " AND outcome = 'error'")
        assert cur.fetchone()["n"] == len(hostile)
