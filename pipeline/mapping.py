"""Stampli GL codes and cost centers to X3 accounts and analytical dimensions.

An unmapped code passes through unchanged and is validated against X3 like any other.
"""

from __future__ import annotations

import csv
from pathlib import Path

from psycopg2.extensions import cursor as Cursor

from pipeline.config import settings


def gl_account(cur: Cursor, code: str) -> str:
    cur.execute("SELECT x3_account FROM gl_account_map WHERE stampli_code = %s", (code.strip(),))
    row = cur.fetchone()
    return row["x3_account"] if row else code.strip()


def cost_center(cur: Cursor, code: str) -> tuple[str, str]:
    cur.execute("SELECT dimension_type, dimension_value FROM cost_center_map"
                " WHERE stampli_code = %s", (code.strip(),))
    row = cur.fetchone()
    if row:
        return row["dimension_type"], row["dimension_value"]
    return settings().x3_dimension_type, code.strip()


def gl_accounts(cur: Cursor, codes: set[str]) -> dict[str, str]:
    """gl_account() for several codes in one query (an invoice's lines share few codes)."""
    keys = sorted({c.strip() for c in codes})
    cur.execute("SELECT stampli_code, x3_account FROM gl_account_map"
                " WHERE stampli_code = ANY(%s)", (keys,))
    found = {r["stampli_code"]: r["x3_account"] for r in cur.fetchall()}
    return {c: found.get(c.strip(), c.strip()) for c in codes}


def cost_centers(cur: Cursor, codes: set[str]) -> dict[str, tuple[str, str]]:
    """cost_center() for several codes in one query."""
    keys = sorted({c.strip() for c in codes})
    cur.execute("SELECT stampli_code, dimension_type, dimension_value FROM cost_center_map"
                " WHERE stampli_code = ANY(%s)", (keys,))
    found = {r["stampli_code"]: (r["dimension_type"], r["dimension_value"])
             for r in cur.fetchall()}
    default = settings().x3_dimension_type
    return {c: found.get(c.strip(), (default, c.strip())) for c in codes}


def import_csv(cur: Cursor, kind: str, path: str | Path) -> int:
    """Load a mapping file: gl (stampli_code,x3_account) or cost_centers
    (stampli_code,dimension_type,dimension_value). Existing codes are replaced."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if kind == "gl":
            cur.execute("INSERT INTO gl_account_map VALUES (%s,%s) ON CONFLICT (stampli_code)"
                        " DO UPDATE SET x3_account = EXCLUDED.x3_account",
                        (row["stampli_code"].strip(), row["x3_account"].strip()))
        else:
            cur.execute("INSERT INTO cost_center_map VALUES (%s,%s,%s) ON CONFLICT (stampli_code)"
                        " DO UPDATE SET dimension_type = EXCLUDED.dimension_type,"
                        " dimension_value = EXCLUDED.dimension_value",
                        (row["stampli_code"].strip(), row["dimension_type"].strip(),
                         row["dimension_value"].strip()))
    return len(rows)
