"""Remote file names come from the server: only one plain, printable segment is taken."""

import pytest

from pipeline.stampli.sftp import shown_name, unsafe_name


@pytest.mark.parametrize(("name", "reason"), [
    ("invoices_1.csv", None),
    ("invoices_é.csv", None),
    ("../invoices_1.csv", "holds a path separator"),
    ("invoices_/etc/passwd.csv", "holds a path separator"),
    ("invoices_a\\b.csv", "holds a path separator"),
    ("invoices_..csv", "holds '..'"),
    ("invoices_\n.csv", "holds a control or invisible character"),
    ("invoices_\x1b[31m.csv", "holds a control or invisible character"),
    ("invoices_\u202egpj.csv", "holds a control or invisible character"),
    ("invoices_\u200b.csv", "holds a control or invisible character"),
    ("invoices_" + "é" * 124 + ".csv", "longer than 255 bytes (261)"),
    ("invoices_\udcff.csv", "not valid UTF-8"),
])
def test_unsafe_names(name, reason):
    got = unsafe_name(name)
    assert (got is None) if reason is None else (got is not None and got.startswith(reason))


def test_shown_names_hold_no_control_character():
    assert shown_name("invoices_\x1b[2J\n.csv") == "invoices_\\x1b[2J\\n.csv"
    assert shown_name("x" * 1000).endswith("...") and len(shown_name("x" * 1000)) == 303
