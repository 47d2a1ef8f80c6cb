"""What an operator asks first: how many files and invoices are where, when we last polled and
will poll next, how much work waits in the queue, and the oldest invoice not yet settled."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg2.extensions import cursor as Cursor

from pipeline.states import SETTLED, FileStatus
from pipeline.vendor_links import created_count


def summary(cur: Cursor, *, poll_interval: int | None = None,
            broker_url: str | None = None) -> dict[str, Any]:
    cur.execute("SELECT status, count(*) AS n FROM source_files GROUP BY status ORDER BY status")
    files = {r["status"]: r["n"] for r in cur.fetchall()}
    cur.execute("SELECT status, count(*) AS n FROM invoices GROUP BY status ORDER BY status")
    invoices = {r["status"]: r["n"] for r in cur.fetchall()}
    cur.execute("SELECT count(*) AS n FROM parse_rejections")
    rejected = cur.fetchone()["n"]
    polls = poll_health(cur)
    last = polls["last_poll_at"]
    cur.execute("SELECT id, stampli_vendor_id, invoice_number, status, created_at FROM invoices"
                " WHERE status <> ALL(%s) ORDER BY created_at, id LIMIT 1", (list(SETTLED),))
    oldest = cur.fetchone()
    data: dict[str, Any] = {
        "files": files,
        "invoices": invoices,
        "invoices_rejected_at_parse": rejected,
        "vendors_created": created_count(cur),
        "last_poll_at": _iso(last),
        "last_poll_outcome": polls["last_poll_outcome"],
        "last_successful_poll_at": _iso(polls["last_successful_poll_at"]),
        "last_error": polls["last_error"],
        "waiting_files": polls["waiting_files"],
        "oldest_unsettled": None if oldest is None else {
            "id": oldest["id"], "vendor_id": oldest["stampli_vendor_id"],
            "invoice_number": oldest["invoice_number"], "status": oldest["status"],
            "since": oldest["created_at"].isoformat()},
    }
    if poll_interval is not None:
        data["next_poll_at"] = (last + timedelta(seconds=poll_interval)).isoformat() \
            if last else None
    if broker_url is not None:
        from workers.queue import queue_depth  # the broker's layout is the workers' business

        data["queue"] = queue_depth(broker_url)
    return data


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def poll_health(cur: Cursor) -> dict[str, Any]:
    """The last poll, the last that reached the export without error, the last error (with
    when it happened), and the files the last poll found still being written."""
    cur.execute("SELECT started_at, outcome, detail FROM polls ORDER BY started_at DESC, id DESC"
                " LIMIT 1")
    last = cur.fetchone()
    cur.execute("SELECT max(started_at) AS at FROM polls WHERE outcome = 'ok'")
    ok_at = cur.fetchone()["at"]
    cur.execute("SELECT started_at, detail->>'error' AS error FROM polls WHERE outcome = 'error'"
                " ORDER BY started_at DESC, id DESC LIMIT 1")
    err = cur.fetchone()
    cur.execute("SELECT detail FROM polls WHERE finished_at IS NOT NULL"
                " ORDER BY started_at DESC, id DESC LIMIT 1")
    finished = cur.fetchone()
    waiting = (finished["detail"] or {}).get("waiting_files", []) if finished else []
    return {
        "last_poll_at": last["started_at"] if last else None,
        "last_poll_outcome": (last["outcome"] or "running") if last else None,
        "last_successful_poll_at": ok_at,
        "last_error": {"at": err["started_at"].isoformat(), "error": err["error"]}
        if err else None,
        "waiting_files": waiting,
    }


def settled(summary_: dict[str, Any]) -> bool:
    """Nothing in flight: no file waits for its parse, every invoice reached an end state."""
    in_flight_files = summary_["files"].get(FileStatus.FETCHED, 0)
    open_invoices = sum(n for s, n in summary_["invoices"].items() if s not in SETTLED)
    return in_flight_files == 0 and open_invoices == 0


def render(summary_: dict[str, Any]) -> str:
    rows = [("files", s, n) for s, n in summary_["files"].items()]
    rows += [("invoices", s, n) for s, n in summary_["invoices"].items()]
    rows.append(("invoices", "rejected at parse", summary_["invoices_rejected_at_parse"]))
    rows.append(("vendors", "created in X3", summary_["vendors_created"]))
    queue = summary_.get("queue")
    if "queue" in summary_:
        rows.append(("queue", "waiting", queue["waiting"] if queue else "unreachable"))
        rows.append(("queue", "unacked", queue["unacked"] if queue else "unreachable"))
    width = max(len(f"{a} {b}") for a, b, _ in rows) + 2
    out = [f"{'what':<{width}}count", "-" * (width + 5)]
    out += [f"{f'{a} {b}':<{width}}{n}" for a, b, n in rows]
    outcome = summary_.get("last_poll_outcome")
    out.append(f"last poll: {summary_['last_poll_at'] or 'never'}"
               + (f" ({outcome})" if outcome else ""))
    out.append(f"last successful poll: {summary_.get('last_successful_poll_at') or 'never'}")
    error = summary_.get("last_error")
    if error:
        out.append(f"last poll error: {error['at']}: {error['error']}")
    if "next_poll_at" in summary_:
        out.append(f"next poll: {summary_['next_poll_at'] or 'at the next beat tick'}")
    oldest = summary_.get("oldest_unsettled")
    if oldest:
        out.append(f"oldest unsettled: invoice {oldest['invoice_number']} of vendor "
                   f"{oldest['vendor_id']} ({oldest['status']} since {oldest['since']})")
    out += render_waiting(summary_.get("waiting_files") or [])
    return "\n".join(out)


def render_waiting(files: list[dict[str, Any]]) -> list[str]:
    """Files seen on the export but not yet stable (still being written), oldest first."""
    if not files:
        return []
    out = [f"waiting for stability ({len(files)}):"]
    for f in sorted(files, key=lambda f: (f["first_seen"], f["name"])):
        out.append(f"  {f['name']}  {f['size']} bytes  first seen {f['first_seen']}")
    return out
