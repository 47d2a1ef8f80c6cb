"""Mapping uploads: the CLI's CSV formats, previewed with every code checked against X3, then
saved through `pipeline.mapping.import_csv` by the person who previewed them."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from psycopg2.extensions import cursor as Cursor

from console import users
from pipeline import db, mapping
from pipeline.config import settings

COLUMNS = {"gl": ("stampli_code", "x3_account"),
           "cost_centers": ("stampli_code", "dimension_type", "dimension_value"),
           "dimension": ("stampli_code", "dimension_value"),
           "route": ("location", "company", "site")}
LABELS = {"gl": "GL accounts", "cost_centers": "cost centers", "dimension": "dimension values",
          "route": "routes"}
MAX_ROWS = 5000


class UploadError(ValueError):
    """The file cannot be previewed; the message says why."""


@dataclass
class Row:
    line: int
    values: dict[str, str]
    previous: str | None = None
    problems: list[str] = field(default_factory=list)
    checked: str = ""


@dataclass
class Preview:
    kind: str
    dimension_type: str | None
    rows: list[Row]
    upload_id: int | None = None

    @property
    def valid(self) -> bool:
        return bool(self.rows) and not any(r.problems for r in self.rows)


def parse(kind: str, text: str, dimension_type: str | None = None) -> list[Row]:
    if kind not in COLUMNS:
        raise UploadError(f"unknown mapping kind {kind!r}")
    if kind == "dimension" and not (dimension_type or "").strip():
        raise UploadError("a dimension mapping needs its dimension type (e.g. PRJ)")
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = [c for c in COLUMNS[kind] if c not in (reader.fieldnames or [])]
    if missing:
        raise UploadError(f"missing column(s) {', '.join(missing)}; expected "
                          f"{','.join(COLUMNS[kind])}")
    rows = []
    for n, raw in enumerate(reader, start=2):
        if n - 1 > MAX_ROWS:
            raise UploadError(f"more than {MAX_ROWS} rows: split the file")
        values = {c: (raw.get(c) or "").strip() for c in COLUMNS[kind]}
        row = Row(n, values)
        for c, v in values.items():
            if not v:
                row.problems.append(f"{c} is empty")
            elif len(v) > 30 or not v.isprintable():
                row.problems.append(f"{c} is not a valid code")
        rows.append(row)
    if not rows:
        raise UploadError("the file has no rows")
    return rows


def _previous(cur: Cursor, kind: str, dimension_type: str | None, row: Row) -> str | None:
    v = row.values
    if kind == "gl":
        cur.execute("SELECT x3_account AS p FROM gl_account_map WHERE stampli_code = %s",
                    (v["stampli_code"],))
    elif kind == "cost_centers":
        cur.execute("SELECT dimension_type || '=' || dimension_value AS p FROM cost_center_map"
                    " WHERE stampli_code = %s", (v["stampli_code"],))
    elif kind == "dimension":
        cur.execute("SELECT dimension_value AS p FROM dimension_map WHERE dimension_type = %s"
                    " AND stampli_code = %s", (dimension_type, v["stampli_code"]))
    else:
        cur.execute("SELECT company || '/' || site AS p FROM entity_routes WHERE location = %s",
                    (v["location"].casefold(),))
    found = cur.fetchone()
    return found["p"] if found else None


def _check_x3(kind: str, dimension_type: str | None, rows: list[Row]) -> None:
    from pipeline.x3.connect import open_client

    checks: list[tuple[Row, tuple[str, str], str]] = []  # (row, code, what it names)
    for row in rows:
        if row.problems:
            continue
        v = row.values
        if kind == "route":
            row.checked = "company and site are not checked (X3 has no query for them here)"
        elif kind == "gl":
            checks.append((row, ("ACC", v["x3_account"]),
                           f"GL account {v['x3_account']} (chart {settings().x3_coa})"))
        else:
            dim_type = v["dimension_type"] if kind == "cost_centers" else dimension_type
            checks.append((row, (str(dim_type), v["dimension_value"]),
                           f"dimension {dim_type} value {v['dimension_value']}"))
    with db.transaction() as cur:
        client = open_client(cur)
    try:
        # The file's codes in one batched query per type (not one call per code).
        accounts = client.known_accounts(settings().x3_coa,
                                         [c for _, (t, c), _ in checks if t == "ACC"])
        dimensions = client.known_dimensions([k for _, k, _ in checks if k[0] != "ACC"])
    finally:
        client.close()
    for row, key, what in checks:
        if (key[1] in accounts) if key[0] == "ACC" else (key in dimensions):
            row.checked = f"{what} exists in X3"
        else:
            row.problems.append(f"{what} does not exist in X3")


def preview(user: users.User, kind: str, text: str, dimension_type: str | None = None
            ) -> Preview:
    """Parse, check every code against X3, and keep the upload for `save`."""
    dimension_type = (dimension_type or "").strip().upper() or None
    rows = parse(kind, text, dimension_type)
    try:
        _check_x3(kind, dimension_type, rows)
    except Exception as exc:  # noqa: BLE001 - X3 unreachable: shown, nothing saved
        from pipeline.secrets import mask

        for row in rows:
            row.problems.append(f"could not ask X3: {mask(str(exc))[:200]}")
    result = Preview(kind, dimension_type, rows)
    with db.transaction() as cur:
        for row in rows:
            row.previous = _previous(cur, kind, dimension_type, row)
        cur.execute("INSERT INTO console_uploads (by_user, kind, dimension_type, content, valid)"
                    " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                    (user.name, kind, dimension_type, text, result.valid))
        result.upload_id = cur.fetchone()["id"]
        users.record(cur, "mapping_preview", user.name, "ok" if result.valid else "error",
                     kind=kind, dimension_type=dimension_type, rows=len(rows),
                     problems=[f"line {r.line}: {p}" for r in rows for p in r.problems][:20])
    return result


def save(user: users.User, upload_id: int) -> dict[str, Any]:
    """Import the previewed upload (valid, by this user, not saved yet); audited with what
    each code was mapped to before."""
    with db.transaction() as cur:
        cur.execute("SELECT * FROM console_uploads WHERE id = %s AND by_user = %s"
                    " AND saved_at IS NULL FOR UPDATE", (upload_id, user.name))
        up = cur.fetchone()
        if up is None:
            raise UploadError("no such upload waiting to be saved: preview the file again")
        if not up["valid"]:
            raise UploadError("the preview found problems: fix the file and preview it again")
        rows = parse(up["kind"], up["content"], up["dimension_type"])
        changes = [{"line": r.line, **r.values,
                    "previous": _previous(cur, up["kind"], up["dimension_type"], r)}
                   for r in rows]
        fd, path = tempfile.mkstemp(suffix=".csv")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(up["content"])
            n = mapping.import_csv(cur, up["kind"], path, dimension_type=up["dimension_type"])
        finally:
            os.unlink(path)
        cur.execute("UPDATE console_uploads SET saved_at = now() WHERE id = %s", (upload_id,))
        users.record(cur, "mapping_import", user.name, kind=up["kind"],
                     dimension_type=up["dimension_type"], rows=n, changes=changes[:200])
    return {"kind": up["kind"], "rows": n}
