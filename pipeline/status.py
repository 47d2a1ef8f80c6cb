"""What an operator asks first: how many files and invoices are where, and when we last polled."""

from __future__ import annotations

from typing import Any

from psycopg2.extensions import cursor as Cursor

from pipeline.vendors import created_count

SETTLED = ("posted", "failed", "needs_review")


def summary(cur: Cursor) -> dict[str, Any]:
    cur.execute("SELECT status, count(*) AS n FROM source_files GROUP BY status ORDER BY status")
    files = {r["status"]: r["n"] for r in cur.fetchall()}
    cur.execute("SELECT status, count(*) AS n FROM invoices GROUP BY status ORDER BY status")
    invoices = {r["status"]: r["n"] for r in cur.fetchall()}
    cur.execute("SELECT count(*) AS n FROM parse_rejections")
    rejected = cur.fetchone()["n"]
    cur.execute("SELECT max(started_at) AS at FROM polls")
    last = cur.fetchone()["at"]
    return {
        "files": files,
        "invoices": invoices,
        "invoices_rejected_at_parse": rejected,
        "vendors_created": created_count(cur),
        "last_poll_at": last.isoformat() if last else None,
    }


def settled(summary_: dict[str, Any]) -> bool:
    """Nothing in flight: no file waits for its parse, every invoice reached an end state."""
    in_flight_files = summary_["files"].get("fetched", 0)
    open_invoices = sum(n for s, n in summary_["invoices"].items() if s not in SETTLED)
    return in_flight_files == 0 and open_invoices == 0


def render(summary_: dict[str, Any]) -> str:
    rows = [("files", s, n) for s, n in summary_["files"].items()]
    rows += [("invoices", s, n) for s, n in summary_["invoices"].items()]
    rows.append(("invoices", "rejected at parse", summary_["invoices_rejected_at_parse"]))
    rows.append(("vendors", "created in X3", summary_["vendors_created"]))
    width = max(len(f"{a} {b}") for a, b, _ in rows) + 2
    out = [f"{'what':<{width}}count", "-" * (width + 5)]
    out += [f"{f'{a} {b}':<{width}}{n}" for a, b, n in rows]
    out.append(f"last poll: {summary_['last_poll_at'] or 'never'}")
    return "\n".join(out)
