"""Shared by the console tests: export files for the stories, users, a logged-in client."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.conftest import SAMPLES

PASSWORD = "correct horse battery"
UNKNOWN_GL = "7777"  # BO-7731's line: a Stampli code X3 does not know (X3 has 6500)


def drop_export_with_unknown_gl(export_dir: Path) -> None:
    """The samples, BO-7731 booked on GL 7777: it fails validation until 7777 is mapped."""
    shutil.copy(SAMPLES / "vendors_20261103101500.csv", export_dir)
    text = (SAMPLES / "invoices_20261103101500.csv").read_text()
    lines = [ln.replace(",6500,", f",{UNKNOWN_GL},") if ",BO-7731," in ln else ln
             for ln in text.splitlines(keepends=True)]
    (export_dir / "invoices_20261103101500.csv").write_text("".join(lines))


def drop_changed_reexport(export_dir: Path) -> None:
    """INV-88121 again with a changed line description: a posted invoice goes to review."""
    text = (SAMPLES / "invoices_20261103101500.csv").read_text().splitlines(keepends=True)
    rows = [text[0]] + [ln.replace("Hydraulic hose assemblies", "Hydraulic hoses revised")
                        for ln in text[1:] if ",INV-88121," in ln]
    (export_dir / "invoices_20261104090000.csv").write_text("".join(rows))


def add_user(name: str, role: str) -> None:
    from console import users
    from pipeline import db

    with db.transaction() as cur:
        users.add(cur, name, role, PASSWORD, by="test")


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf(html: str) -> str:
    m = CSRF.search(html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def login(client, name: str, password: str = PASSWORD, address: str = "127.0.0.1"):
    page = client.get("/login")
    return client.post("/login", data={"name": name, "password": password,
                                       "csrf_token": csrf(page.get_data(as_text=True))},
                       environ_base={"REMOTE_ADDR": address})
