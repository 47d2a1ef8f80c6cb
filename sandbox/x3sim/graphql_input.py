"""GraphQL create inputs: checked against their input type, then mapped to the api1 body that
rules.py validates and X3State stores, so both transports obey one rule set.

What stays here is GraphQL's own type system: the fields an input type defines, the ones it
declares non-null beyond what every create needs, and the shape of a line's dimensions. A
problem the rules find is named by the GraphQL field it came from (`GRAPHQL_NAMES`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.x3sim.rules import Names


@dataclass(frozen=True)
class InputType:
    name: str
    fields: tuple[str, ...]
    non_null: tuple[str, ...] = ()  # mandatory here, optional in api1

    def problems(self, data: Mapping[str, Any], where: str = "") -> list[str]:
        found = [f"{where}{key}: field is not defined by type '{self.name}'"
                 for key in data if key not in self.fields]
        found += [f"{where}{name}: mandatory field" for name in self.non_null
                  if data.get(name) is None or data.get(name) == ""]
        return found


SUPPLIER_INPUT = InputType("Supplier_Input", (
    "code", "companyName1", "taxIdNumber", "europeanUnionVatNumber", "currency", "addresses"))
ADDRESS_INPUT = InputType("Address_Input", (
    "code", "addressLine1", "addressLine2", "city", "zipCode", "state", "country", "isDefault"))
INVOICE_INPUT = InputType("SupplierBpInvoice_Input", (
    "company", "site", "invoiceType", "category", "accountingDate", "billBySupplier", "currency",
    "sourceDocument", "sourceDocumentDate", "payToBusinessPartner", "dueDate",
    "totalAmountIncludingTax", "lines"), non_null=("company", "site", "invoiceType", "category"))
LINE_INPUT = InputType("SupplierBpInvoiceLine_Input", (
    "lineNumber", "site", "account", "chartOfAccounts", "lineAmountExcludingTax", "quantity",
    "description", "dimensions"), non_null=("chartOfAccounts",))

# The api1 field each input field maps to, seen from the rules' side.
GRAPHQL_NAMES = Names(fields={
    # supplier and its addresses
    "BPSNUM": "code", "BPSNAM": "companyName1", "CRN": "taxIdNumber",
    "EECNUM": "europeanUnionVatNumber", "CUR": "currency", "BPADDRESS": "addresses",
    "BPAADD": "code", "BPAADDLIG 1": "addressLine1", "BPAADDLIG 2": "addressLine2",
    "CTY": "city", "POSCOD": "zipCode", "SAT": "state", "CRY": "country",
    # invoice and its lines
    "CPY": "company", "FCY": "site", "INVTYP": "invoiceType", "ACCDAT": "accountingDate",
    "BPR": "billBySupplier", "BPRVCR": "sourceDocument", "BPRDAT": "sourceDocumentDate",
    "BPRPAY": "payToBusinessPartner", "DUDDAT": "dueDate", "AMTATI": "totalAmountIncludingTax",
    "BPSINVLIG": "lines", "LIG": "lineNumber", "ACC": "account", "COA": "chartOfAccounts",
    "AMTNOTLIN": "lineAmountExcludingTax", "QTY": "quantity", "DES": "description",
    "DIE": "dimensions", "CCE": "dimensions",
}, line="lines {n}: ", address="addresses {n}: ")


def _objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a list input (the rules refuse a list that holds anything else)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def supplier_problems(data: Mapping[str, Any]) -> list[str]:
    found = SUPPLIER_INPUT.problems(data)
    for n, address in enumerate(_objects(data.get("addresses")), start=1):
        found += ADDRESS_INPUT.problems(address, f"addresses {n}: ")
    return found


def supplier_body(data: Mapping[str, Any]) -> dict[str, Any]:
    addresses = data.get("addresses") or []
    body = {
        "BPSNUM": data.get("code") or "", "BPSNAM": data.get("companyName1"),
        "CRN": data.get("taxIdNumber") or "", "EECNUM": data.get("europeanUnionVatNumber") or "",
        "CUR": data.get("currency") or "", "BPAADD": "",
        "BPADDRESS": addresses,  # as sent unless a list of objects: the rules refuse it
    }
    if isinstance(addresses, list) and len(_objects(addresses)) == len(addresses):
        default = next((a for a in addresses if a.get("isDefault")),
                       addresses[0] if addresses else {})
        body["BPAADD"] = default.get("code", "")
        body["BPADDRESS"] = [_address_body(a) for a in addresses]
    return body


def _address_body(a: Mapping[str, Any]) -> dict[str, Any]:
    return {"BPAADD": a.get("code"),
            "BPAADDLIG": [a.get("addressLine1") or "", a.get("addressLine2") or "", ""],
            "POSCOD": a.get("zipCode"), "CTY": a.get("city"), "SAT": a.get("state"),
            "CRY": a.get("country")}


def invoice_problems(data: Mapping[str, Any]) -> list[str]:
    found = INVOICE_INPUT.problems(data)
    for n, line in enumerate(_objects(data.get("lines")), start=1):
        where = f"lines {n}: "
        found += LINE_INPUT.problems(line, where)
        dims = line.get("dimensions") or []
        if not isinstance(dims, list) or not all(isinstance(d, dict) for d in dims):
            found.append(f"{where}dimensions: must be a list of {{dimensionType, dimension}}")
        elif any(set(d) - {"dimensionType", "dimension"}
                 or not isinstance(d.get("dimensionType"), str)
                 or not isinstance(d.get("dimension"), str) for d in dims):
            found.append(f"{where}dimensions: each needs dimensionType and dimension strings")
    return found


def invoice_body(data: Mapping[str, Any]) -> dict[str, Any]:
    lines = data.get("lines")
    body = {
        "BPR": data.get("billBySupplier"), "BPRVCR": data.get("sourceDocument"),
        "BPRDAT": data.get("sourceDocumentDate"), "ACCDAT": data.get("accountingDate"),
        "INVTYP": data.get("invoiceType"), "CUR": data.get("currency"), "FCY": data.get("site"),
        "CPY": data.get("company"), "AMTATI": data.get("totalAmountIncludingTax"),
        "category": data.get("category"),
        "BPSINVLIG": [_line_body(line) if isinstance(line, dict) else line for line in lines]
        if isinstance(lines, list) else lines,
    }
    if data.get("payToBusinessPartner"):
        body["BPRPAY"] = data["payToBusinessPartner"]
    if data.get("dueDate"):
        body["DUDDAT"] = data["dueDate"]
    return {k: v for k, v in body.items() if v is not None}


def _line_body(line: Mapping[str, Any]) -> dict[str, Any]:
    dims = line.get("dimensions") or []
    return {
        "LIG": line.get("lineNumber"), "ACC": line.get("account"),
        "AMTNOTLIN": line.get("lineAmountExcludingTax"), "QTY": line.get("quantity"),
        "DES": line.get("description"),
        # The line's site and chart (GraphQL only: api1 lines take the header's FCY and the
        # ledger's chart)
        **({"FCY": line["site"]} if line.get("site") else {}),
        "COA": line.get("chartOfAccounts"),
        "DIE": [d["dimensionType"] for d in dims], "CCE": [d["dimension"] for d in dims],
    }
