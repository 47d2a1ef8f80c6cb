"""Sage X3 REST api1 (on-premise Syracuse) with HTTP Basic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import requests

from pipeline.x3.client import NewInvoice, NewSupplier, Supplier
from pipeline.x3.errors import X3AuthError, X3Unavailable, X3ValidationError
from pipeline.x3.limits import Limiter
from pipeline.x3.transport import RetryPolicy, Transport, created_key, retry_after_seconds


def sdata_literal(value: str) -> str:
    """A quoted SData string literal: a quote inside is doubled."""
    return "'" + value.replace("'", "''") + "'"


class RestClient:
    """One session per client (see transport.py): reads retried, creates never re-sent blindly."""

    def __init__(self, base_url: str, folder: str, username: str, password: str, *,
                 invoice_class: str = "BPSINVOICE", timeout: float = 30.0,
                 connect_timeout: float = 5.0, verify: bool | str = True,
                 limiter: Limiter | None = None, retry: RetryPolicy | None = None) -> None:
        self.root = f"{base_url.rstrip('/')}/api1/x3/erp/{quote(folder)}"
        self.invoice_class = invoice_class
        self._http = Transport(timeout=timeout, connect_timeout=connect_timeout, verify=verify,
                               limiter=limiter, retry=retry)
        self._http.session.auth = (username, password)

    def __repr__(self) -> str:
        return f"RestClient({self.root!r})"

    def close(self) -> None:
        self._http.close()

    # -- operations ---------------------------------------------------------------------------
    def find_supplier_by_tax_id(self, tax_id: str) -> Supplier | None:
        # One round trip for both fields (SData `or`); the registration number wins a tie.
        literal = sdata_literal(tax_id)
        rows = self._query("BPSUPPLIER", f"CRN eq {literal} or EECNUM eq {literal}")
        rows.sort(key=lambda r: r.get("CRN") != tax_id)
        return _supplier(rows[0]) if rows else None

    def find_supplier_by_code(self, code: str) -> Supplier | None:
        rows = self._query("BPSUPPLIER", f"BPSNUM eq {sdata_literal(code)}")
        return _supplier(rows[0]) if rows else None

    def find_suppliers(self, *, tax_ids: Sequence[str] = (), codes: Sequence[str] = (),
                       names: Sequence[str] = ()) -> list[Supplier]:
        """Every supplier with any of these tax ids (CRN or EECNUM), codes or names: one query
        (SData `or`), literal comparisons; the caller decides what matches."""
        terms = [f"{f} eq {sdata_literal(v)}" for v in dict.fromkeys(tax_ids)
                 for f in ("CRN", "EECNUM")]
        terms += [f"BPSNUM eq {sdata_literal(v)}" for v in dict.fromkeys(codes)]
        terms += [f"BPSNAM eq {sdata_literal(v)}" for v in dict.fromkeys(names)]
        if not terms:
            return []
        return [_supplier(r) for r in self._query("BPSUPPLIER", " or ".join(terms), count=100)]

    def create_supplier(self, supplier: NewSupplier) -> Supplier:
        lines = list(supplier.address_lines[:3])
        body: dict[str, Any] = {
            "BPSNAM": supplier.name, "CUR": supplier.currency,
            "BPAADD": "A01",
            "BPADDRESS": [{"BPAADD": "A01", "BPAADDLIG": lines + [""] * (3 - len(lines)),
                           "POSCOD": supplier.postal_code, "CTY": supplier.city,
                           "SAT": supplier.state, "CRY": supplier.country}],
        }
        if supplier.code:  # else X3 numbers it (sequence numbering)
            body["BPSNUM"] = supplier.code
        if supplier.tax_id:
            body["CRN"] = supplier.tax_id
        if supplier.eu_vat_id:
            body["EECNUM"] = supplier.eu_vat_id
        created = self._create("BPSUPPLIER", body)
        created_key(created, "BPSNUM", "BPSUPPLIER create")
        return _supplier(created)

    def account_exists(self, chart: str, account: str) -> bool:
        where = f"COA eq {sdata_literal(chart)} and ACC eq {sdata_literal(account)}"
        return bool(self._query("GACCOUNT", where, count=1))

    def dimension_exists(self, dimension_type: str, value: str) -> bool:
        where = f"DIE eq {sdata_literal(dimension_type)} and CCE eq {sdata_literal(value)}"
        return bool(self._query("CACCE", where, count=1))

    def find_invoice(self, supplier_code: str, document_number: str) -> str | None:
        where = (f"BPR eq {sdata_literal(supplier_code)}"
                 f" and BPRVCR eq {sdata_literal(document_number)}")
        rows = self._query(self.invoice_class, where)
        return str(rows[0].get("NUM") or rows[0].get("$key")) if rows else None

    def create_invoice(self, invoice: NewInvoice) -> str:
        body = {
            "BPR": invoice.supplier_code, "BPRVCR": invoice.document_number,
            "BPRDAT": invoice.document_date.isoformat(),
            "ACCDAT": invoice.accounting_date.isoformat(),
            "INVTYP": invoice.invoice_type, "CUR": invoice.currency,
            "FCY": invoice.site, "CPY": invoice.company,
            "AMTATI": str(invoice.total_including_tax), "AMTNOT": str(invoice.total_excluding_tax),
            "DES": invoice.description,
            "BPSINVLIG": [
                {"LIG": line.line_number, "ACC": line.account, "AMTNOTLIN": str(line.amount),
                 "QTY": str(line.quantity), "DES": line.description,
                 "DIE": [d for d, _ in line.dimensions], "CCE": [v for _, v in line.dimensions]}
                for line in invoice.lines
            ],
        }
        if invoice.due_date:
            body["DUDDAT"] = invoice.due_date.isoformat()
        created = self._create(self.invoice_class, body)
        return created_key(created, "NUM", f"{self.invoice_class} create")

    # -- transport ----------------------------------------------------------------------------
    def _query(self, cls: str, where: str, *, count: int = 20) -> list[dict[str, Any]]:
        url: str | None = f"{self.root}/{cls}"
        params: dict[str, Any] | None = {
            "representation": f"{cls}.$query", "where": where, "count": count,
        }
        rows: list[dict[str, Any]] = []
        while url:
            page = self._http.read("GET", url, _answer, params=params)
            rows.extend(page.get("$resources", []))
            url = ((page.get("$links") or {}).get("$next") or {}).get("$url")
            params = None  # the $next url carries its own query string
        return rows

    def _create(self, cls: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._http.write("POST", f"{self.root}/{cls}", _answer, f"{cls} create",
                                params={"representation": f"{cls}.$create"}, json=body)


def _diagnoses(resp: requests.Response) -> list[str]:
    try:
        body = resp.json()
    except ValueError:
        return [resp.text[:200] or resp.reason]
    msgs = [d.get("$message", "") for d in body.get("$diagnoses", []) if isinstance(d, dict)]
    return [m for m in msgs if m] or [resp.reason or f"HTTP {resp.status_code}"]


def _answer(resp: requests.Response) -> dict[str, Any]:
    code = resp.status_code
    if code < 300:
        return resp.json() if resp.content else {}
    messages = _diagnoses(resp)
    text = "; ".join(messages)
    if code in (401, 403):
        raise X3AuthError(f"X3 refused the credentials (HTTP {code}): {text}")
    if code in (429, 502, 503, 504) or code >= 500:
        raise X3Unavailable(f"X3 unavailable (HTTP {code}): {text}",
                            retry_after=retry_after_seconds(resp.headers.get("Retry-After")))
    raise X3ValidationError(f"X3 refused the request (HTTP {code}): {text}", messages)


def _supplier(row: dict[str, Any]) -> Supplier:
    return Supplier(code=str(row.get("BPSNUM") or row.get("$key")), name=row.get("BPSNAM", ""),
                    tax_id=row.get("CRN") or row.get("EECNUM") or None,
                    eu_vat_id=row.get("EECNUM") or None)
