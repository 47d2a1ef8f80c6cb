"""The append-only audit trail: one row per file parse, vendor lookup, invoice posting ..."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from psycopg2.extensions import cursor as Cursor

from pipeline.secrets import mask_all, redact


@dataclass(frozen=True)
class TaskContext:
    """Who is doing the work: the Celery task id and attempt, or the CLI."""

    task_id: str | None = None
    attempt: int | None = None


CLI = TaskContext(task_id="cli", attempt=None)


def record(
    cur: Cursor,
    stage: str,
    outcome: str,
    *,
    ctx: TaskContext = CLI,
    source_file_id: int | None = None,
    invoice_id: int | None = None,
    **detail: Any,
) -> None:
    """Write one audit row in the caller's transaction; detail is redacted (secret-looking keys)
    and masked (secret values anywhere, pipeline.secrets.mask) before it is stored."""
    cur.execute(
        "INSERT INTO audit_events (stage, outcome, source_file_id, invoice_id, task_id, attempt,"
        " detail) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (stage, outcome, source_file_id, invoice_id, ctx.task_id, ctx.attempt,
         json.dumps(mask_all(redact(_plain(detail))), default=str)),
    )


def _plain(value: Any) -> Any:
    """JSON-ready values, so what default=str would render is masked too."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def events(cur: Cursor, *, invoice_id: int | None = None, file_id: int | None = None,
           limit: int = 200) -> list[dict[str, Any]]:
    where, args = [], []
    if invoice_id is not None:
        where.append("invoice_id = %s")
        args.append(invoice_id)
    if file_id is not None:
        where.append("source_file_id = %s")
        args.append(file_id)
    sql = "SELECT * FROM audit_events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    cur.execute(sql + " ORDER BY id DESC LIMIT %s", (*args, limit))
    return list(reversed(cur.fetchall()))
