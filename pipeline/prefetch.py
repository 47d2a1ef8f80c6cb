"""Confirm a file's X3 codes before its invoices fan out: one batched query per type.

The invoices of one export share a handful of GL accounts and cost centers. Asked invoice by
invoice, every worker process would spend licensed X3 calls on the same codes; asked here once per
file, X3's answers sit in the shared validation cache (pipeline.validation) before any invoice
needs them. Best effort: with X3 down or no connection yet, each invoice asks for itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pipeline import db, mapping, validation
from pipeline.config import settings
from pipeline.x3.client import X3Client
from pipeline.x3.transport import RetryPolicy

log = logging.getLogger(__name__)

_LINE_CODES = """
SELECT DISTINCT l->>'gl_account' AS account, l->>'cost_center' AS center, l->'dimensions' AS dims
FROM invoices i CROSS JOIN LATERAL jsonb_array_elements(i.payload->'lines') AS l
WHERE i.id = ANY(%s)
"""


def codes_of(cur: Any, invoice_ids: Sequence[int]) -> tuple[set[str], set[tuple[str, str]]]:
    """The X3 accounts and (type, value) dimensions these invoices' lines map to."""
    cur.execute(_LINE_CODES, (list(invoice_ids),))
    raw_accounts: set[str] = set()
    raw_centers: set[str] = set()
    raw_dims: set[tuple[str, str]] = set()
    for row in cur.fetchall():
        if row["account"]:
            raw_accounts.add(row["account"])
        if row["center"]:
            raw_centers.add(row["center"])
        if isinstance(row["dims"], dict):
            raw_dims |= {(t, v) for t, v in row["dims"].items() if isinstance(v, str) and v}
    accounts = set(mapping.gl_accounts(cur, raw_accounts).values())
    dimensions = set(mapping.cost_centers(cur, raw_centers).values())
    dimensions |= {mapping.dimension(cur, t, v) for t, v in raw_dims}
    return accounts, dimensions


# The prefetch holds up the file's fan-out: one try per query, and a short deadline each.
PREFETCH_TRY = RetryPolicy(attempts=1)
PREFETCH_DEADLINE = 10.0


def prefetch_codes(invoice_ids: Sequence[int], client: X3Client | None = None) -> int:
    """Ask X3 about these invoices' codes not confirmed yet (through `client`, else a client of
    its own that tries each query once, within PREFETCH_DEADLINE); how many distinct codes they
    use (0 when the prefetch could not run: the invoices will then ask for themselves)."""
    if not invoice_ids:
        return 0
    from pipeline.x3.connect import open_client

    own = None
    try:
        with db.transaction() as cur:
            accounts, dimensions = codes_of(cur, invoice_ids)
            if client is None:
                client = own = open_client(
                    cur, retry=PREFETCH_TRY,
                    deadline=min(PREFETCH_DEADLINE, settings().x3_deadline))
        validation.known_codes(client, settings().x3_coa, accounts, dimensions)
    except Exception as exc:  # noqa: BLE001 - a shortcut only: posting validates regardless
        log.warning("X3 code prefetch skipped (%s): each invoice checks its own codes",
                    type(exc).__name__)
        return 0
    finally:
        if own is not None:
            own.close()
    return len(accounts) + len(dimensions)
