"""The simulator's SData `where` parser on its own: no server, no network."""

import pytest

from sandbox.x3sim.where import (
    UnknownPropertyError,
    WhereSyntaxError,
    compile_where,
    parse_where,
)

SUPPLIER = {"BPSNUM": "ACME01", "BPSNAM": "O'Brien Tools", "CRN": "94-1234567", "CUR": "USD"}
INVOICE = {"NUM": "SIV000001", "BPR": "ACME01", "BPRDAT": "2026-11-03", "AMTATI": "1260.50"}
FIELDS = set(SUPPLIER) | set(INVOICE) | {"EECNUM", "ENAFLG"}


def matches(where, record):
    return compile_where(where, FIELDS)(record)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("CRN eq '94-1234567'", True),
        ("CRN eq '94-1234568'", False),
        ("CRN ne '94-1234568'", True),
        ("BPSNAM eq 'O''Brien Tools'", True),
        ("BPSNAM eq 'O'Brien Tools'", None),  # unescaped quote: syntax error
        ("CUR EQ 'USD' AND BPSNUM eq 'ACME01'", True),  # keywords are case-insensitive
        ("CUR = 'USD' and BPSNUM <> 'X'", True),
        ("BPSNUM eq 'X' or CUR eq 'USD'", True),
        ("BPSNUM eq 'X' and CUR eq 'USD' or CRN eq '94-1234567'", True),  # and binds tighter
        ("BPSNUM eq 'X' and (CUR eq 'USD' or CRN eq '94-1234567')", False),
        ("(BPSNUM eq 'ACME01' or BPSNUM eq 'X') and not CUR eq 'EUR'", True),
        ("'USD' eq CUR", True),
        ("EECNUM eq null", True),  # absent field
        ("CRN ne null", True),
    ],
)
def test_supplier_predicates(where, expected):
    if expected is None:
        with pytest.raises(WhereSyntaxError):
            matches(where, SUPPLIER)
    else:
        assert matches(where, SUPPLIER) is expected


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("BPRDAT eq @2026-11-03@", True),
        ("BPRDAT ge @2026-11-01@ and BPRDAT lt @2026-11-04@", True),
        ("BPRDAT gt @2026-11-03@", False),
        ("AMTATI gt 1000", True),  # decimal strings compare as numbers, not text
        ("AMTATI eq 1260.5", True),
        ("AMTATI le -1", False),
        ("AMTATI gt 'A'", False),  # compared as text when the literal is text
        ("NUM lt 'SIV000002'", True),
    ],
)
def test_typed_comparisons(where, expected):
    assert matches(where, INVOICE) is expected


def test_booleans_compare_with_json_flags():
    assert matches("ENAFLG eq true", {"ENAFLG": True})
    assert not matches("ENAFLG eq true", {"ENAFLG": False})


def test_blank_where_matches_everything():
    assert compile_where(None, FIELDS)({}) is True
    assert compile_where("   ", FIELDS)({}) is True


def test_unknown_property_is_reported_even_without_records():
    with pytest.raises(UnknownPropertyError) as caught:
        compile_where("CUR eq 'USD' and TAXID eq '1'", FIELDS)
    assert caught.value.name == "TAXID"
    assert "TAXID" in str(caught.value)


@pytest.mark.parametrize(
    "where",
    [
        "CRN eq",
        "CRN '1'",
        "CRN eq '1' and",
        "(CRN eq '1'",
        "CRN eq '1')",
        "CRN eq 'unterminated",
        "BPRDAT eq @2026-13-01@",
        "CRN eq '1' CUR eq 'USD'",
        "CRN # '1'",
        "and",
        "",
    ],
)
def test_syntax_errors(where):
    with pytest.raises(WhereSyntaxError):
        parse_where(where)


def test_properties_lists_every_name():
    predicate = parse_where("A eq 1 or (B eq 'x' and not C eq @2026-01-01@)")
    assert sorted(predicate.properties()) == ["A", "B", "C"]
