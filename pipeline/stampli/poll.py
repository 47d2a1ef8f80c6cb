"""One poll of the export directory: take stable, unseen files into the ledger.

Only one poll runs at a time across every worker and beat (a Postgres advisory lock).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import posixpath
import tempfile
from dataclasses import dataclass, field
from typing import Any

import paramiko

from pipeline import audit, blobs, connections, db, locks
from pipeline.audit import TaskContext
from pipeline.config import settings
from pipeline.secrets import SecretError
from pipeline.stampli import sftp as sftp_mod
from pipeline.stampli.sftp import FileTooLarge, RemoteFile
from pipeline.states import FileStatus

log = logging.getLogger(__name__)


@dataclass
class PollResult:
    locked_out: bool = False
    new_file_ids: list[int] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # files not yet stable
    # the same, for people: name, size, first_seen (ISO time)
    waiting_files: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    refused: list[str] = field(default_factory=list)  # unsafe remote names (shown escaped)
    error: str | None = None
    transient: bool = False  # the error may pass (network), worth a retry


def _kind(name: str) -> str | None:
    s = settings()
    if any(fnmatch.fnmatchcase(name, p) for p in s.vendor_patterns):
        return "vendors"
    if any(fnmatch.fnmatchcase(name, p) for p in s.invoice_patterns):
        return "invoices"
    return None


def poll(ctx: TaskContext, connection_name: str = connections.STAMPLI) -> PollResult:
    """List, check stability, download new files; vendor files get the lower ids."""
    with locks.try_held(locks.poll()) as ours:
        if not ours:
            with db.transaction() as tx:
                audit.record(tx, "poll", "skipped", ctx=ctx, reason="another poll holds the lock")
            return PollResult(locked_out=True)
        return _poll_locked(ctx, connection_name)


def _poll_locked(ctx: TaskContext, connection_name: str) -> PollResult:
    result = PollResult()
    with db.transaction() as cur:
        cur.execute("INSERT INTO polls DEFAULT VALUES RETURNING id")
        poll_id = cur.fetchone()["id"]
    try:
        with db.transaction() as cur:
            conn = connections.load(cur, connection_name)
    except (connections.ConnectionMissing, SecretError) as exc:
        # Not configured (or keys that cannot read it): a failed poll an operator sees in
        # mlc status and health, not only a traceback in a worker log.
        result.error = str(exc)
        _finish(ctx, poll_id, result)
        return result
    directory = conn.settings.get("remote_dir", ".")
    patterns = settings().vendor_patterns + settings().invoice_patterns
    try:
        with sftp_mod.open_sftp(conn) as sftp:
            refused: list[tuple[str, str]] = []
            listed = sftp_mod.list_files(sftp, directory, patterns, refused)
            _refuse_names(ctx, conn.name, directory, refused, result)
            names = sftp_mod.names_in(sftp, directory)
            stable = _stable(conn.name, listed, names, result)
            # Vendors first so their ids are lower: invoice parses wait for them.
            stable.sort(key=lambda f: (_kind(f.name) != "vendors", f.name))
            for remote in stable:
                try:
                    file_id = _take(ctx, sftp, conn.name, remote, result)
                except (OSError, paramiko.SSHException) as exc:
                    # One file vanishing or failing mid-download must not stop the others;
                    # nothing of it was recorded, so the next poll takes it again.
                    _file_error(ctx, remote, exc)
                    continue
                if file_id is not None:
                    result.new_file_ids.append(file_id)
    except sftp_mod.SftpError as exc:
        result.error = str(exc)
        result.transient = exc.transient
        with db.transaction() as cur:
            audit.record(cur, "file_fetch", "error", ctx=ctx, connection=connection_name,
                         error=str(exc))
    _finish(ctx, poll_id, result)
    return result


def _finish(ctx: TaskContext, poll_id: int, result: PollResult) -> None:
    with db.transaction() as cur:
        cur.execute(
            "UPDATE polls SET finished_at = now(), outcome = %s, fetched = %s, detail = %s"
            " WHERE id = %s",
            ("error" if result.error else "ok", len(result.new_file_ids),
             json.dumps({"waiting": result.waiting, "waiting_files": result.waiting_files,
                         "skipped": result.skipped, "refused": result.refused,
                         "error": result.error}), poll_id),
        )
        audit.record(cur, "poll", "error" if result.error else "ok", ctx=ctx, poll_id=poll_id,
                     fetched=len(result.new_file_ids), waiting=result.waiting,
                     skipped=result.skipped, error=result.error)


def _refuse_names(ctx: TaskContext, conn_name: str, directory: str,
                  refused: list[tuple[str, str]], result: PollResult) -> None:
    """Unsafe remote names (a path separator, '..', controls, over 255 bytes, not UTF-8) are
    never downloaded nor moved: audited once per name, then left where they are."""
    for name, reason in refused:
        shown = sftp_mod.shown_name(name)
        result.refused.append(shown)
        with db.transaction() as cur:
            cur.execute("SELECT 1 FROM audit_events WHERE stage = 'file_fetch'"
                        " AND outcome = 'error' AND detail->>'connection' = %s"
                        " AND detail->>'directory' = %s AND detail->>'name' = %s LIMIT 1",
                        (conn_name, directory, shown))
            if cur.fetchone() is None:
                log.warning("remote file name %s refused: %s", shown, reason)
                audit.record(cur, "file_fetch", "error", ctx=ctx, connection=conn_name,
                             directory=directory, name=shown,
                             reason=f"remote file name {shown} refused: {reason}; not"
                                    " downloaded, not moved")


def _file_error(ctx: TaskContext, remote: RemoteFile, exc: BaseException) -> None:
    reason = f"download of {remote.path} failed: {type(exc).__name__}: {exc}"
    log.warning(reason)
    with db.transaction() as cur:
        audit.record(cur, "file_fetch", "error", ctx=ctx, path=remote.path, reason=reason)


def _stable(conn_name: str, listed: list[RemoteFile], names: set[str], result: PollResult
            ) -> list[RemoteFile]:
    """Files safe to take: unchanged since the previous listing, or with a .done marker."""
    mode = settings().stability
    taken = []
    with db.transaction() as cur:
        for f in listed:
            cur.execute("SELECT size, mtime FROM remote_listing"
                        " WHERE connection = %s AND path = %s", (conn_name, f.path))
            before = cur.fetchone()
            cur.execute(
                "INSERT INTO remote_listing (connection, path, size, mtime) VALUES (%s,%s,%s,%s)"
                " ON CONFLICT (connection, path) DO UPDATE SET size = EXCLUDED.size,"
                " mtime = EXCLUDED.mtime, seen_at = now(),"
                # first seen: kept while the file grows, new when the listed one was taken
                " first_seen_at = CASE WHEN EXISTS (SELECT 1 FROM source_files s"
                "   WHERE s.connection = remote_listing.connection"
                "   AND s.path = remote_listing.path AND s.size = remote_listing.size"
                "   AND s.mtime = remote_listing.mtime) THEN now()"
                "   ELSE remote_listing.first_seen_at END"
                " RETURNING first_seen_at",
                (conn_name, f.path, f.size, f.mtime),
            )
            first_seen = cur.fetchone()["first_seen_at"]
            if mode == "done_marker":
                ok = f"{f.name}.done" in names
            else:
                ok = before is not None and (before["size"], before["mtime"]) == (f.size, f.mtime)
            if ok:
                taken.append(f)
            elif not _seen(cur, conn_name, f):
                result.waiting.append(f.name)
                result.waiting_files.append({"name": f.name, "size": f.size,
                                             "first_seen": first_seen.isoformat()})
    return taken


def _seen(cur: object, conn_name: str, f: RemoteFile) -> bool:
    cur.execute(  # type: ignore[attr-defined]
        "SELECT 1 FROM source_files WHERE connection = %s AND path = %s AND size = %s"
        " AND mtime = %s", (conn_name, f.path, f.size, f.mtime))
    return cur.fetchone() is not None  # type: ignore[attr-defined]


def _take(ctx: TaskContext, sftp: paramiko.SFTPClient, conn_name: str, f: RemoteFile,
          result: PollResult) -> int | None:
    kind = _kind(f.name)
    cap = settings().max_file_mb * 1024 * 1024
    with db.transaction() as cur:
        if _seen(cur, conn_name, f):
            result.skipped += 1
            return None
    with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as tmp:  # larger: on disk
        try:
            if f.size > cap:
                raise FileTooLarge(f"{f.path} is larger than the {settings().max_file_mb} MB cap")
            sha = sftp_mod.download(sftp, f.path, tmp, cap)
        except FileTooLarge as exc:
            return _reject_oversize(ctx, conn_name, f, kind, str(exc))
        tmp.seek(0)
        with db.transaction() as cur:
            oid = blobs.store(cur, tmp)
            cur.execute(
                "INSERT INTO source_files (connection, path, kind, size, mtime, sha256,"
                " content_oid) VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING RETURNING id",
                (conn_name, f.path, kind, f.size, f.mtime, sha, oid),
            )
            row = cur.fetchone()
            if row is None:
                blobs.discard(cur, oid)
            file_id = _record_fetch(cur, ctx, row, f, sha, kind, result)
    remote_path = _after_download(sftp, f)
    if file_id is not None:
        with db.transaction() as cur:
            cur.execute("UPDATE source_files SET remote_path = %s WHERE id = %s",
                        (remote_path, file_id))
    return file_id


def _record_fetch(cur: Any, ctx: TaskContext, row: dict[str, Any] | None, f: RemoteFile,
                  sha: str, kind: str | None, result: PollResult) -> int | None:
    if row is None:
        result.skipped += 1
        audit.record(cur, "file_fetch", "skipped", ctx=ctx, path=f.path, sha256=sha,
                     reason="same content already fetched")
        return None
    audit.record(cur, "file_fetch", "ok", ctx=ctx, source_file_id=row["id"], path=f.path,
                 size=f.size, sha256=sha, kind=kind)
    return row["id"]


def _reject_oversize(ctx: TaskContext, conn_name: str, f: RemoteFile, kind: str | None,
                     reason: str) -> None:
    with db.transaction() as cur:
        cur.execute(
            "INSERT INTO source_files (connection, path, kind, size, mtime, sha256, content,"
            " status, error) VALUES (%s,%s,%s,%s,%s,%s,'',%s,%s)"
            " ON CONFLICT DO NOTHING RETURNING id",
            (conn_name, f.path, kind, f.size, f.mtime, f"oversize:{f.path}:{f.size}:{f.mtime}",
             FileStatus.REJECTED, reason),
        )
        row = cur.fetchone()
        audit.record(cur, "file_fetch", "error", ctx=ctx,
                     source_file_id=row["id"] if row else None, path=f.path, reason=reason)
    return None


def _after_download(sftp: paramiko.SFTPClient, f: RemoteFile) -> str | None:
    """Leave, move to processed/ or delete the remote file; returns where it is now."""
    action = settings().after_download
    try:
        if action == "move":
            return sftp_mod.move_to(sftp, f.path,
                                    posixpath.join(posixpath.dirname(f.path), "processed"))
        if action == "delete":
            sftp.remove(f.path)
            return None
    except OSError as exc:
        # The file is safely in the ledger; a failed tidy-up must not lose it.
        log.warning("could not %s %s after download: %s", action, f.path, exc)
    return f.path


def quarantine(ctx: TaskContext, file_id: int, connection_name: str = connections.STAMPLI
               ) -> str | None:
    """Move a file that could not be parsed at all into failed/ beside it (best effort)."""
    with db.transaction() as cur:
        cur.execute("SELECT path, remote_path FROM source_files WHERE id = %s", (file_id,))
        row = cur.fetchone()
        conn = connections.load(cur, connection_name)
    if not row or not row["remote_path"]:
        return None  # deleted after download: nothing left to move
    if settings().after_failure == "leave":  # MLC_AFTER_FAILURE=leave
        with db.transaction() as cur:
            audit.record(cur, "file_parse", "error", ctx=ctx, source_file_id=file_id,
                         left_in_place=row["remote_path"],
                         reason="unparseable file left in place (MLC_AFTER_FAILURE=leave)")
        return None
    try:
        with sftp_mod.open_sftp(conn) as sftp:
            # failed/ sits beside the original file, even when it already went to processed/.
            target = sftp_mod.move_to(sftp, row["remote_path"],
                                      posixpath.join(posixpath.dirname(row["path"]), "failed"))
    except (sftp_mod.SftpError, OSError) as exc:
        log.warning("could not move file %s to failed/: %s", file_id, exc)
        return None
    with db.transaction() as cur:
        cur.execute("UPDATE source_files SET remote_path = %s WHERE id = %s", (target, file_id))
        audit.record(cur, "file_parse", "error", ctx=ctx, source_file_id=file_id,
                     moved_to=target, reason="unparseable file moved to failed/")
    return target
