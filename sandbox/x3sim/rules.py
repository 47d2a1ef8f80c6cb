"""The rules a supplier or invoice create must pass, written once for both transports.

They read the api1 body (BPSNUM, BPR, BPSINVLIG...): GraphQL maps its input to that body first
(graphql_input.py). Every problem found is listed, as X3 lists all its diagnoses, and named by
the field it is about: api1's own name by default, or through `Names` the name the client sent
(GraphQL's `lines 1: account` for api1's `BPSINVLIG line 1: ACC`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

SUPPLIER_CODE_MAX = 15
DOCUMENT_NUMBER_MAX = 30
INVOICE_CATEGORIES = ("invoice", "creditNote")
_DECIMAL_RE = re.compile(r"[+-]?\d+(\.\d+)?")


class ValidationFailed(ValueError):
    """A create was refused; every problem found is listed, as X3 lists its diagnoses."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class Names:
    """How a problem names a field: api1's names unless `fields` maps them to the client's."""

    fields: Mapping[str, str] = field(default_factory=dict)  # api1 name -> name shown
    line: str = "BPSINVLIG line {n}: "  # prefix of a problem on invoice line n
    address: str = "BPADDRESS {n}: "  # prefix of a problem on supplier address n

    def __call__(self, name: str) -> str:
        return self.fields.get(name, name)


API1_NAMES = Names()


@dataclass
class InvoiceRefs:
    """What an invoice may point at, looked up under the state lock."""

    suppliers: Mapping[str, Any]
    accounts: Mapping[tuple[str, str], Mapping[str, Any]]
    dimensions: Mapping[tuple[str, str], Mapping[str, Any]]
    coa: str


def iso_date_problem(name: str, value: str) -> str | None:
    """Dates travel as YYYY-MM-DD on both transports; the reason when one does not."""
    try:
        if len(value) != 10:
            raise ValueError
        date.fromisoformat(value)
    except ValueError:
        return f"{name}: invalid date '{value}', expected YYYY-MM-DD"
    return None


class _Problems:
    """The problems found in one body, each named through `names` after the `where` prefix."""

    def __init__(self, names: Names) -> None:
        self.names = names
        self.errors: list[str] = []

    def add(self, name: str, problem: str, where: str = "") -> None:
        self.errors.append(f"{where}{self.names(name)}: {problem}")

    def text(self, body: Mapping[str, Any], name: str, where: str = "", *,
             required: bool = False, max_len: int | None = None) -> str | None:
        return self.text_value(body.get(name), name, where, required=required, max_len=max_len)

    def text_value(self, value: Any, name: str, where: str = "", *, required: bool = False,
                   max_len: int | None = None) -> str | None:
        if value is None or value == "":
            if required:
                self.add(name, "mandatory field", where)
            return None
        if not isinstance(value, str):
            self.add(name, f"must be a string, got {json.dumps(value)}", where)
            return None
        if max_len is not None and len(value) > max_len:
            self.add(name, f"'{value}' is longer than {max_len} characters", where)
            return None
        return value

    def decimal(self, body: Mapping[str, Any], name: str, where: str = "", *,
                required: bool) -> None:
        value = body.get(name)
        if value is None:
            if required:
                self.add(name, "mandatory field", where)
        elif isinstance(value, bool | int | float):
            # Binary floats lose cents; the contract sends decimals as strings: refuse numbers.
            self.add(name, f"decimal must be sent as a string, got number {value}", where)
        elif not isinstance(value, str) or not _DECIMAL_RE.fullmatch(value):
            self.add(name, f"invalid decimal {json.dumps(value)}", where)

    def date(self, body: Mapping[str, Any], name: str, *, required: bool) -> None:
        value = self.text(body, name, required=required)
        if value is not None and (problem := iso_date_problem(self.names(name), value)):
            self.errors.append(problem)

    def objects(self, body: Mapping[str, Any], name: str, what: str) -> list[dict[str, Any]]:
        """The list of objects under `name` (absent: none); a problem if it is something else."""
        items = body.get(name, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            self.add(name, f"must be a list of {what} objects")
            return []
        return items


def check_supplier(body: Mapping[str, Any], existing: Mapping[str, Any], *,
                   numbered: bool = False, names: Names = API1_NAMES) -> list[str]:
    """`numbered`: X3 numbers suppliers itself (sequence), so BPSNUM may be left out."""
    p = _Problems(names)
    code = p.text(body, "BPSNUM", required=not numbered)
    if code is not None:
        if code != code.upper() or code != code.strip():
            p.add("BPSNUM", f"supplier code '{code}' must be upper case without spaces")
        elif len(code) > SUPPLIER_CODE_MAX:
            p.add("BPSNUM", f"'{code}' is longer than {SUPPLIER_CODE_MAX} characters")
        elif code in existing:
            p.add("BPSNUM", f"record already exists: supplier '{code}'")
    p.text(body, "BPSNAM", required=True)
    for name in ("CRN", "EECNUM", "CUR", "BPAADD"):
        p.text(body, name)
    for number, address in enumerate(p.objects(body, "BPADDRESS", "address"), start=1):
        where = names.address.format(n=number)
        p.text(address, "BPAADD", where, required=True)
        for name in ("POSCOD", "CTY", "SAT", "CRY"):
            p.text(address, name, where)
        lines = address.get("BPAADDLIG", [])
        if not isinstance(lines, list):
            p.add("BPAADDLIG", "must be a list of address lines", where)
            continue
        for index, value in enumerate(lines, start=1):
            p.text_value(value, f"BPAADDLIG {index}", where)
    return p.errors


def check_invoice(body: Mapping[str, Any], refs: InvoiceRefs, *,
                  names: Names = API1_NAMES) -> list[str]:
    p = _Problems(names)
    for name in ("BPR", "BPRPAY"):  # the supplier billing, and the one paid if another
        supplier = p.text(body, name, required=name == "BPR")
        if supplier is not None and supplier not in refs.suppliers:
            p.add(name, f"supplier '{supplier}' does not exist")
    p.text(body, "BPRVCR", required=True, max_len=DOCUMENT_NUMBER_MAX)
    p.date(body, "BPRDAT", required=True)
    p.date(body, "ACCDAT", required=True)
    p.date(body, "DUDDAT", required=False)
    p.text(body, "CUR", required=True)
    for name in ("INVTYP", "SIVTYP", "FCY", "CPY", "DES"):
        p.text(body, name)
    category = p.text(body, "category")
    if category is not None and category not in INVOICE_CATEGORIES:
        p.add("category", f"'{category}' is not one of {list(INVOICE_CATEGORIES)}")
    p.decimal(body, "AMTATI", required=True)
    p.decimal(body, "AMTNOT", required=False)
    lines = body.get("BPSINVLIG")
    if not isinstance(lines, list) or not lines:
        p.add("BPSINVLIG", "at least one line is required")
    elif not all(isinstance(line, dict) for line in lines):
        p.add("BPSINVLIG", "lines must be objects")
    else:
        for number, line in enumerate(lines, start=1):
            _check_invoice_line(line, names.line.format(n=number), refs, p)
    return p.errors


def _check_invoice_line(line: Mapping[str, Any], where: str, refs: InvoiceRefs,
                        p: _Problems) -> None:
    lig = line.get("LIG")
    if not isinstance(lig, int) or isinstance(lig, bool) or lig < 1:
        p.add("LIG", f"must be a positive integer, got {json.dumps(lig)}", where)
    p.text(line, "FCY", where)
    # A line may name its chart (GraphQL's do); it must be the ledger's, which api1 implies.
    chart = p.text(line, "COA", where)
    account = p.text(line, "ACC", where, required=True)
    if chart is not None and chart != refs.coa:
        p.add("COA", f"'{chart}' is not the chart of the ledger ('{refs.coa}')", where)
    elif account is not None:
        found = refs.accounts.get((refs.coa, account))
        if found is None:
            p.add("ACC", f"account '{account}' does not exist in {refs.coa}", where)
        elif not found.get("ENAFLG", True):
            p.add("ACC", f"account '{account}' is inactive in {refs.coa}", where)
    p.decimal(line, "AMTNOTLIN", where, required=True)
    p.decimal(line, "QTY", where, required=False)
    p.text(line, "DES", where)
    _check_line_dimensions(line, where, refs, p)


def _check_line_dimensions(line: Mapping[str, Any], where: str, refs: InvoiceRefs,
                           p: _Problems) -> None:
    types, values = line.get("DIE", []), line.get("CCE", [])
    if not _is_str_list(types) or not _is_str_list(values):
        p.errors.append(f"{where}DIE and CCE must be lists of strings")
        return
    if len(types) != len(values):
        p.errors.append(f"{where}DIE has {len(types)} entries but CCE has {len(values)}")
        return
    for die, cce in zip(types, values, strict=True):
        found = refs.dimensions.get((die, cce))
        if found is None:
            p.add("CCE", f"dimension '{cce}' of type '{die}' does not exist", where)
        elif not found.get("ENAFLG", True):
            p.add("CCE", f"dimension '{cce}' of type '{die}' is inactive", where)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
