"""What an operator does from the console: replay (the rules of `mlc replay`) and acknowledge a
review. Each is audited with the person's name."""

from __future__ import annotations

from typing import Any

from console import users
from pipeline import db
from pipeline import replay as replay_mod


class ActionRefused(Exception):
    """The action is not allowed on this invoice; the message says why."""


def replay(user: users.User, invoice_id: int, reason: str) -> list[dict[str, Any]]:
    """Reset the invoice as `mlc replay --id` does (same refusals) and queue its resolution."""
    reason = reason.strip()
    if not reason:
        raise ActionRefused("a replay needs a reason (it goes in the audit trail)")
    from pipeline.config import settings
    from workers.send import broker_ping, send_many

    try:  # Redis down: say so before any row is reset, as `mlc replay` does
        broker_ping(settings().broker_url)
    except Exception as exc:  # noqa: BLE001 - any broker failure refuses the replay
        raise ActionRefused(f"the queue (Redis) does not answer: {type(exc).__name__};"
                            " nothing was changed") from None
    try:
        chosen = replay_mod.select_for_replay(users.CONSOLE,
                                              replay_mod.Selection(invoice_id=invoice_id),
                                              reason=reason, by=user.name)
    except replay_mod.ReplayRefused as exc:
        with db.transaction() as cur:
            users.record(cur, "replay", user.name, "error", invoice_id=invoice_id,
                         reason=reason, refused=str(exc))
        raise ActionRefused(str(exc)) from exc
    # After the commit above, as the CLI does: the worker reads the reset row.
    send_many("mlc.process_invoice", [[row["id"]] for row in chosen])
    return chosen


def acknowledge(user: users.User, invoice_id: int, note: str) -> None:
    """Record that a person read the review and decided; nothing is sent to X3."""
    note = note.strip()
    if not note:
        raise ActionRefused("an acknowledgement needs a note")
    with db.transaction() as cur:
        cur.execute("SELECT status, review_reason FROM invoices WHERE id = %s FOR UPDATE",
                    (invoice_id,))
        row = cur.fetchone()
        if row is None or not row["review_reason"]:
            raise ActionRefused("this invoice is not under review")
        cur.execute("SELECT 1 FROM console_acknowledgements WHERE invoice_id = %s"
                    " AND review_reason = %s", (invoice_id, row["review_reason"]))
        if cur.fetchone():
            raise ActionRefused("this review is already acknowledged")
        cur.execute("INSERT INTO console_acknowledgements (invoice_id, review_reason, note,"
                    " by_user) VALUES (%s, %s, %s, %s)",
                    (invoice_id, row["review_reason"], note, user.name))
        users.record(cur, "acknowledge", user.name, invoice_id=invoice_id, note=note,
                     review_reason=row["review_reason"], status=row["status"])
