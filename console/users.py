"""Console users in Postgres: add, disable, change password, authenticate with rate limits.

Every change and every login is audited (stage `console`) with the person's name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg2.extensions import cursor as Cursor

from console.passwords import check_strength, dummy_hash, hash_password, verify_password
from pipeline import audit
from pipeline.audit import TaskContext

ROLES = ("viewer", "operator", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}
CONSOLE = TaskContext(task_id="console", attempt=None)

# Failed tries in the window before further tries are refused (even with the right password).
WINDOW_SECONDS = 15 * 60
MAX_FAILS_PER_USER = 5
MAX_FAILS_PER_ADDRESS = 20


class UserError(ValueError):
    """A user command cannot be done; the message says why."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    generation: int

    def may(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]


def record(cur: Cursor, action: str, by: str, outcome: str = "ok", *,
           invoice_id: int | None = None, **detail: Any) -> None:
    """One audit row for a console action, naming who did it."""
    audit.record(cur, "console", outcome, ctx=CONSOLE, invoice_id=invoice_id, action=action,
                 by=by, **detail)


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64 or not name.isprintable() or " " in name:
        raise UserError("a user name is 1 to 64 printable characters without spaces")
    return name


def add(cur: Cursor, name: str, role: str, password: str, *, by: str) -> None:
    name = _check_name(name)
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    check_strength(password)
    cur.execute("INSERT INTO console_users (name, role, password_hash) VALUES (%s, %s, %s)"
                " ON CONFLICT (name) DO NOTHING RETURNING id",
                (name, role, hash_password(password)))
    if cur.fetchone() is None:
        raise UserError(f"user {name} exists (mlc console user passwd {name})")
    record(cur, "user_add", by, user=name, role=role)


def disable(cur: Cursor, name: str, *, by: str) -> None:
    cur.execute("UPDATE console_users SET disabled_at = now(), generation = generation + 1,"
                " updated_at = now() WHERE name = %s AND disabled_at IS NULL RETURNING id",
                (name,))
    if cur.fetchone() is None:
        raise UserError(f"no active user {name}")
    record(cur, "user_disable", by, user=name)


def set_password(cur: Cursor, name: str, password: str, *, by: str,
                 role: str | None = None) -> None:
    """New password (and role, when given); re-enables a disabled user; ends its sessions."""
    check_strength(password)
    if role is not None and role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    cur.execute("UPDATE console_users SET password_hash = %s, generation = generation + 1,"
                " disabled_at = NULL, role = coalesce(%s, role), updated_at = now()"
                " WHERE name = %s RETURNING role", (hash_password(password), role, name))
    row = cur.fetchone()
    if row is None:
        raise UserError(f"no user {name}")
    record(cur, "user_passwd", by, user=name, role=row["role"])


def listing(cur: Cursor) -> list[dict[str, Any]]:
    cur.execute("SELECT name, role, disabled_at, created_at, updated_at FROM console_users"
                " ORDER BY name")
    return list(cur.fetchall())


def current(cur: Cursor, user_id: int, generation: int) -> User | None:
    """The user a session names, if still active and its password unchanged since."""
    cur.execute("SELECT id, name, role, generation FROM console_users WHERE id = %s"
                " AND generation = %s AND disabled_at IS NULL", (user_id, generation))
    row = cur.fetchone()
    return None if row is None else User(row["id"], row["name"], row["role"], row["generation"])


def _failures(cur: Cursor, column: str, value: str) -> int:
    cur.execute(f"SELECT count(*) AS n FROM console_login_attempts WHERE {column} = %s"
                " AND NOT ok AND at > now() - make_interval(secs => %s)",
                (value, WINDOW_SECONDS))
    return cur.fetchone()["n"]


def authenticate(cur: Cursor, name: str, password: str, address: str
                 ) -> tuple[User | None, str]:
    """(the user, "") or (None, why, safe to show). Every try is recorded for the rate limits
    and audited; nothing is raised, so the caller's transaction commits the record."""
    name = name.strip()[:64]
    limited = (_failures(cur, "username", name) >= MAX_FAILS_PER_USER
               or _failures(cur, "address", address) >= MAX_FAILS_PER_ADDRESS)
    cur.execute("SELECT id, name, role, generation, password_hash, disabled_at"
                " FROM console_users WHERE name = %s", (name,))
    row = cur.fetchone()
    # Hash even when the answer is known, so timing tells nothing about which names exist.
    good = verify_password(password, row["password_hash"] if row else dummy_hash())
    ok = bool(row) and good and row["disabled_at"] is None and not limited
    cur.execute("INSERT INTO console_login_attempts (username, address, ok) VALUES (%s,%s,%s)",
                (name, address, ok and not limited))
    # Only the window matters: this name's older tries go (the index serves the delete).
    cur.execute("DELETE FROM console_login_attempts WHERE username = %s"
                " AND at < now() - make_interval(secs => %s)", (name, 2 * WINDOW_SECONDS))
    record(cur, "login", name, "ok" if ok else "error", address=address,
           reason=None if ok else ("rate limited" if limited else "wrong name or password"))
    if limited:
        return None, "too many failed logins: wait 15 minutes and try again"
    if not ok:
        return None, "wrong name or password"
    return User(row["id"], row["name"], row["role"], row["generation"]), ""
