"""The rules an X3 create must pass: what the simulator refuses, and how it says so.

Each problem found is listed (X3 lists all its diagnoses, not the first one), named by the field
it is about.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

SUPPLIER_CODE_MAX = 15
DOCUMENT_NUMBER_MAX = 30
_DECIMAL_RE = re.compile(r"[+-]?\d+(\.\d+)?")


class ValidationFailed(ValueError):
    """A create was refused; every problem found is listed, as X3 lists its diagnoses."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def iso_date_problem(name: str, value: str) -> str | None:
    """Dates travel as YYYY-MM-DD on both transports; the reason when one does not."""
    try:
        if len(value) != 10:
            raise ValueError
        date.fromisoformat(value)
    except ValueError:
        return f"{name}: invalid date '{value}', expected YYYY-MM-DD"
    return None


def _text(
    body: Mapping[str, Any],
    name: str,
    errors: list[str],
    *,
    required: bool = False,
    max_len: int | None = None,
    where: str = "",
) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            errors.append(f"{where}{name}: mandatory field")
        return None
    if not isinstance(value, str):
        errors.append(f"{where}{name}: must be a string, got {json.dumps(value)}")
        return None
    if max_len is not None and len(value) > max_len:
        errors.append(f"{where}{name}: '{value}' is longer than {max_len} characters")
        return None
    return value


def _decimal(
    body: Mapping[str, Any], name: str, errors: list[str], *, required: bool, where: str = ""
) -> None:
    value = body.get(name)
    if value is None:
        if required:
            errors.append(f"{where}{name}: mandatory field")
    elif isinstance(value, bool | int | float):
        # Binary floats lose cents; the contract sends decimals as strings, so refuse numbers.
        errors.append(f"{where}{name}: decimal must be sent as a string, got number {value}")
    elif not isinstance(value, str) or not _DECIMAL_RE.fullmatch(value):
        errors.append(f"{where}{name}: invalid decimal {json.dumps(value)}")


def _iso_date(body: Mapping[str, Any], name: str, errors: list[str]) -> None:
    value = _text(body, name, errors, required=True)
    if value is not None and (problem := iso_date_problem(name, value)):
        errors.append(problem)


def check_supplier(
    body: Mapping[str, Any], existing: Mapping[str, Any], *, numbered: bool = False
) -> list[str]:
    """`numbered`: X3 numbers suppliers itself (sequence), so BPSNUM may be left out."""
    errors: list[str] = []
    code = _text(body, "BPSNUM", errors, required=not numbered)
    if code is not None:
        if code != code.upper() or code != code.strip():
            errors.append(f"BPSNUM: supplier code '{code}' must be upper case without spaces")
        elif len(code) > SUPPLIER_CODE_MAX:
            errors.append(f"BPSNUM: '{code}' is longer than {SUPPLIER_CODE_MAX} characters")
        elif code in existing:
            errors.append(f"BPSNUM: record already exists: supplier '{code}'")
    _text(body, "BPSNAM", errors, required=True)
    for name in ("CRN", "EECNUM", "CUR", "BPAADD"):
        _text(body, name, errors)
    addresses = body.get("BPADDRESS", [])
    if not isinstance(addresses, list) or not all(isinstance(a, dict) for a in addresses):
        errors.append("BPADDRESS: must be a list of address objects")
    else:
        for number, address in enumerate(addresses, start=1):
            _text(address, "BPAADD", errors, required=True, where=f"BPADDRESS {number}: ")
    return errors


@dataclass
class InvoiceRefs:
    """What an invoice may point at, looked up under the state lock."""

    suppliers: Mapping[str, Any]
    accounts: Mapping[tuple[str, str], Mapping[str, Any]]
    dimensions: Mapping[tuple[str, str], Mapping[str, Any]]
    coa: str


def check_invoice(body: Mapping[str, Any], refs: InvoiceRefs) -> list[str]:
    errors: list[str] = []
    supplier = _text(body, "BPR", errors, required=True)
    if supplier is not None and supplier not in refs.suppliers:
        errors.append(f"BPR: supplier '{supplier}' does not exist")
    _text(body, "BPRVCR", errors, required=True, max_len=DOCUMENT_NUMBER_MAX)
    _iso_date(body, "BPRDAT", errors)
    _iso_date(body, "ACCDAT", errors)
    _text(body, "CUR", errors, required=True)
    for name in ("INVTYP", "SIVTYP", "FCY", "CPY", "DES"):
        _text(body, name, errors)
    _decimal(body, "AMTATI", errors, required=True)
    _decimal(body, "AMTNOT", errors, required=False)
    lines = body.get("BPSINVLIG")
    if not isinstance(lines, list) or not lines:
        errors.append("BPSINVLIG: at least one line is required")
    elif not all(isinstance(line, dict) for line in lines):
        errors.append("BPSINVLIG: lines must be objects")
    else:
        for number, line in enumerate(lines, start=1):
            _check_invoice_line(line, f"BPSINVLIG line {number}: ", refs, errors)
    return errors


def _check_invoice_line(
    line: Mapping[str, Any], where: str, refs: InvoiceRefs, errors: list[str]
) -> None:
    lig = line.get("LIG")
    if not isinstance(lig, int) or isinstance(lig, bool) or lig < 1:
        errors.append(f"{where}LIG: must be a positive integer, got {json.dumps(lig)}")
    account = _text(line, "ACC", errors, required=True, where=where)
    if account is not None:
        found = refs.accounts.get((refs.coa, account))
        if found is None:
            errors.append(f"{where}ACC: account '{account}' does not exist in {refs.coa}")
        elif not found.get("ENAFLG", True):
            errors.append(f"{where}ACC: account '{account}' is inactive in {refs.coa}")
    _decimal(line, "AMTNOTLIN", errors, required=True, where=where)
    _decimal(line, "QTY", errors, required=False, where=where)
    _text(line, "DES", errors, where=where)
    _check_line_dimensions(line, where, refs, errors)


def _check_line_dimensions(
    line: Mapping[str, Any], where: str, refs: InvoiceRefs, errors: list[str]
) -> None:
    types, values = line.get("DIE", []), line.get("CCE", [])
    if not _is_str_list(types) or not _is_str_list(values):
        errors.append(f"{where}DIE and CCE must be lists of strings")
        return
    if len(types) != len(values):
        errors.append(f"{where}DIE has {len(types)} entries but CCE has {len(values)}")
        return
    for die, cce in zip(types, values, strict=True):
        found = refs.dimensions.get((die, cce))
        if found is None:
            errors.append(f"{where}CCE: dimension '{cce}' of type '{die}' does not exist")
        elif not found.get("ENAFLG", True):
            errors.append(f"{where}CCE: dimension '{cce}' of type '{die}' is inactive")


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
