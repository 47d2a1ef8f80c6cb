"""Stampli GL codes and cost centers to X3 accounts and analytical dimensions.

An unmapped code passes through unchanged and is validated against X3 like any other.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
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


class MappingFileError(ValueError):
    """A mapping file that does not have the columns its kind needs."""


COLUMNS = {"gl": ("stampli_code", "x3_account"),
           "cost_centers": ("stampli_code", "dimension_type", "dimension_value"),
           "dimension": ("stampli_code", "dimension_value"),
           "route": ("location", "company", "site")}


class UnknownRoute(LookupError):
    """The invoice's location has no route to an X3 company and site."""


def dimension(cur: Cursor, dimension_type: str, code: str) -> tuple[str, str]:
    """A line's value for one dimension type, mapped or passed through."""
    cur.execute("SELECT dimension_value FROM dimension_map WHERE dimension_type = %s"
                " AND stampli_code = %s", (dimension_type, code.strip()))
    row = cur.fetchone()
    return dimension_type, row["dimension_value"] if row else code.strip()


def route(cur: Cursor, location: str | None) -> tuple[str, str]:
    """(company, site) for an invoice: its location's route, or the default route of the
    settings when the export has no location."""
    if not location or not location.strip():
        return settings().x3_company, settings().x3_site
    cur.execute("SELECT company, site FROM entity_routes WHERE location = %s",
                (location.strip().casefold(),))
    row = cur.fetchone()
    if row is None:
        raise UnknownRoute(f"location {location!r} has no route to an X3 company and site "
                           "(mlc mapping import route FILE.csv)")
    return row["company"], row["site"]


def import_csv(cur: Cursor, kind: str, path: str | Path, dimension_type: str | None = None,
               on_row: Callable[[int, int], None] | None = None) -> int:
    """Load a mapping file; existing codes are replaced. Columns per kind:
    gl: stampli_code,x3_account; cost_centers: stampli_code,dimension_type,dimension_value;
    dimension (with dimension_type): stampli_code,dimension_value;
    route: location,company,site."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in COLUMNS[kind] if c not in header]
        if missing:
            raise MappingFileError(
                f"{path}: the header must be {','.join(COLUMNS[kind])} (missing "
                f"{', '.join(missing)}; found {','.join(header) or 'an empty file'})")
        rows = []
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip(): v for k, v in row.items()}
            if any(not (row.get(c) or "").strip() for c in COLUMNS[kind]):
                raise MappingFileError(f"{path}, line {line}: every row needs "
                                       f"{', '.join(COLUMNS[kind])}; nothing imported")
            rows.append(row)
    for done, row in enumerate(rows, start=1):
        if on_row:
            on_row(done, len(rows))
        if kind == "dimension":
            cur.execute("INSERT INTO dimension_map VALUES (%s,%s,%s) ON CONFLICT"
                        " (dimension_type, stampli_code) DO UPDATE"
                        " SET dimension_value = EXCLUDED.dimension_value",
                        (dimension_type, row["stampli_code"].strip(),
                         row["dimension_value"].strip()))
        elif kind == "route":
            cur.execute("INSERT INTO entity_routes VALUES (%s,%s,%s) ON CONFLICT (location)"
                        " DO UPDATE SET company = EXCLUDED.company, site = EXCLUDED.site",
                        (row["location"].strip().casefold(), row["company"].strip(),
                         row["site"].strip()))
        elif kind == "gl":
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


def listing(cur: Cursor) -> dict[str, list[dict[str, str]]]:
    """Every mapping, in a stable order: GL accounts, cost centers, other dimensions, routes."""
    cur.execute("SELECT stampli_code, x3_account FROM gl_account_map ORDER BY 1")
    gl = cur.fetchall()
    cur.execute("SELECT stampli_code, dimension_type, dimension_value FROM cost_center_map"
                " ORDER BY 1")
    cost_centers = cur.fetchall()
    cur.execute("SELECT dimension_type, stampli_code, dimension_value FROM dimension_map"
                " ORDER BY 1, 2")
    dimensions = cur.fetchall()
    cur.execute("SELECT location, company, site FROM entity_routes ORDER BY 1")
    routes = cur.fetchall()
    return {"gl": gl, "cost_centers": cost_centers, "dimensions": dimensions, "routes": routes}
