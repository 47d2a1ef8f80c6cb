"""mlc db: the schema."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from pipeline import migrate
    from pipeline.config import settings

    applied = migrate.upgrade(settings().database_url)
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0


def register(sub: Any) -> None:
    dbp = sub.add_parser("db", help="database schema").add_subparsers(dest="db_cmd", required=True)
    dbp.add_parser("upgrade", help="apply pending migrations").set_defaults(func=cmd_db_upgrade)
