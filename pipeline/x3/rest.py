"""Sage X3 REST api1 (on-premise Syracuse) with HTTP Basic."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

import requests

from pipeline.secrets import register_login
from pipeline.x3.client import NewInvoice, NewSupplier, Supplier, batches, by_type, confirmed
from pipeline.x3.errors import (
    X3AuthError,
    X3ProtocolError,
    X3Unavailable,
    X3ValidationError,
    messages_of,
)
from pipeline.x3.limits import Limiter
from pipeline.x3.transport import (
    DEFAULT_MAX_RESPONSE_MB,
    RetryPolicy,
    Transport,
    created_key,
    json_object,
    json_or_none,
    origin,
    plain_url,
    retry_after_seconds,
    status_text,
)

MAX_PAGES = 100  # a query of ours matches a handful of rows: more pages is a server gone wrong
DEFAULT_PORTS = {"http": 80, "https": 443}


def sdata_literal(value: str) -> str:
    """A quoted SData string literal: a quote inside is doubled."""
    return "'" + value.replace("'", "''") + "'"


class RestClient:
    """One session per client (see transport.py): reads retried, creates never re-sent blindly."""

    def __init__(self, base_url: str, folder: str, username: str, password: str, *,
                 invoice_class: str = "BPSINVOICE", timeout: float = 30.0,
                 connect_timeout: float = 5.0, verify: bool | str = True,
                 limiter: Limiter | None = None, retry: RetryPolicy | None = None,
                 deadline: float | None = None,
                 max_response_mb: float = DEFAULT_MAX_RESPONSE_MB,
                 max_pages: int = MAX_PAGES) -> None:
        self.root = f"{plain_url(base_url).rstrip('/')}/api1/x3/erp/{quote(folder, safe='')}"
        self.scope = self.root  # what the validation cache is keyed by: one X3 endpoint, folder
        self.invoice_class = invoice_class
        self.max_pages = max_pages
        self._http = Transport(timeout=timeout, connect_timeout=connect_timeout, verify=verify,
                               limiter=limiter, retry=retry, deadline=deadline,
                               max_response_mb=max_response_mb)
        self._http.session.auth = (username, password)
        # What a proxy may echo back: the password, and the Basic header built from it.
        register_login(username, password)

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
        return account in self.known_accounts(chart, [account])

    def dimension_exists(self, dimension_type: str, value: str) -> bool:
        return (dimension_type, value) in self.known_dimensions([(dimension_type, value)])

    def known_accounts(self, chart: str, accounts: Iterable[str]) -> set[str]:
        """Which of these accounts X3 holds in `chart`."""
        return self._known("GACCOUNT", ("COA", chart), "ACC", accounts)

    def known_dimensions(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (dimension type, value) pairs X3 holds: one query per type and batch."""
        return {(dim_type, v) for dim_type, values in by_type(pairs).items()
                for v in self._known("CACCE", ("DIE", dim_type), "CCE", values)}

    def _known(self, cls: str, group: tuple[str, str], field: str,
               codes: Iterable[str]) -> set[str]:
        """Which `codes` of `field` X3's `cls` holds under `group`: one query (SData `or`) per
        LOOKUP_BATCH codes."""
        found: set[str] = set()
        for chunk in batches(codes):
            terms = " or ".join(f"{field} eq {sdata_literal(c)}" for c in chunk)
            rows = self._query(cls, f"{group[0]} eq {sdata_literal(group[1])} and ({terms})",
                               count=len(chunk))
            found |= confirmed(chunk, rows, field, group)
        return found

    def find_invoice(self, supplier_code: str, document_number: str) -> str | None:
        where = (f"BPR eq {sdata_literal(supplier_code)}"
                 f" and BPRVCR eq {sdata_literal(document_number)}")
        rows = self._query(self.invoice_class, where)
        if not rows:
            return None
        number = rows[0].get("NUM") or rows[0].get("$key")
        if not isinstance(number, str | int) or isinstance(number, bool) or not str(number):
            raise X3ProtocolError(f"X3 answered a {self.invoice_class} query whose row has no "
                                  "NUM or $key")
        return str(number)

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
        url = f"{self.root}/{cls}"
        params: dict[str, Any] | None = {
            "representation": f"{cls}.$query", "where": where, "count": count,
        }
        followed = {requests.Request("GET", url, params=params).prepare().url}
        rows: list[dict[str, Any]] = []
        while True:
            page = self._http.read("GET", url, _answer, params=params)
            resources, link = _page(page, cls)
            rows.extend(resources)
            if link is None:
                return rows
            if len(followed) >= self.max_pages:
                raise X3ProtocolError(f"X3 paging went past {self.max_pages} pages: stopped")
            url = self._next(url, link)
            if url in followed:
                raise X3ProtocolError(f"X3 sent a next-page link already followed (page "
                                      f"{len(followed) + 1}): paging stopped")
            followed.add(url)
            params = None  # the $next url carries its own query string

    def _next(self, current: str, link: str) -> str:
        """The next page's absolute URL, only if it lies under this client's api1 folder: the
        session sends the Basic login to whatever URL it is given."""
        url = urljoin(current, link)
        root = urlsplit(self.root)
        try:
            parts = urlsplit(url)
            port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
            segments = unquote(parts.path).replace("\\", "/").split("/")
            inside = (parts.scheme.lower() == root.scheme.lower()
                      and (parts.hostname or "") == (root.hostname or "")
                      and port == (root.port or DEFAULT_PORTS.get(root.scheme.lower()))
                      and "@" not in parts.netloc
                      and parts.path.startswith(root.path + "/")
                      and not {".", ".."} & set(segments))
        except ValueError:
            inside = False
        if not inside:
            raise X3ProtocolError(f"X3 sent a next-page link to {origin(url)}, outside "
                                  f"{self.root}: not followed")
        return url

    def _create(self, cls: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._http.write("POST", f"{self.root}/{cls}", _answer, f"{cls} create",
                                params={"representation": f"{cls}.$create"}, json=body)


def _page(page: dict[str, Any], cls: str) -> tuple[list[dict[str, Any]], str | None]:
    """A query page's rows and next link, or X3ProtocolError naming what is wrong."""
    def wrong(what: str) -> X3ProtocolError:
        return X3ProtocolError(f"X3 answered a {cls} query page that is not the contract's "
                               f"({what})")

    resources = page.get("$resources", [])
    if not isinstance(resources, list) or not all(isinstance(r, dict) for r in resources):
        raise wrong("$resources is not a list of objects")
    links = page.get("$links")
    links = {} if links is None else links
    if not isinstance(links, dict):
        raise wrong("$links is not an object")
    following = links.get("$next")
    following = {} if following is None else following
    if not isinstance(following, dict):
        raise wrong("$links.$next is not an object")
    link = following.get("$url")
    if link is not None and not isinstance(link, str):
        raise wrong("$links.$next.$url is not a string")
    return resources, link or None


def _diagnoses(resp: requests.Response) -> list[str]:
    """X3's own messages ($diagnoses[].$message), never the raw body: an error page from X3 or
    a proxy may echo the request, Authorization header included."""
    body = json_or_none(resp)
    diagnoses = body.get("$diagnoses") if isinstance(body, dict) else None
    if not isinstance(diagnoses, list):
        return []
    return messages_of([d.get("$message") for d in diagnoses if isinstance(d, dict)])


def _answer(resp: requests.Response) -> dict[str, Any]:
    code = resp.status_code
    if code < 300:
        return json_object(resp)
    messages = _diagnoses(resp)
    status = f"HTTP {status_text(code)}"
    text = f"{status}): {'; '.join(messages)}" if messages else f"{status})"
    if code in (401, 403):
        raise X3AuthError(f"X3 refused the credentials ({text}")
    if code == 429 or code >= 500:
        raise X3Unavailable(f"X3 unavailable ({text}",
                            retry_after=retry_after_seconds(resp.headers.get("Retry-After")))
    raise X3ValidationError(f"X3 refused the request ({text}", messages)


def _supplier(row: dict[str, Any]) -> Supplier:
    code = row.get("BPSNUM") or row.get("$key")
    if not isinstance(code, str | int) or isinstance(code, bool) or not str(code):
        raise X3ProtocolError("X3 answered a supplier without BPSNUM or $key")
    tax_id = row.get("CRN") or row.get("EECNUM") or None
    return Supplier(code=str(code), name=str(row.get("BPSNAM") or ""),
                    tax_id=str(tax_id) if tax_id is not None else None,
                    eu_vat_id=str(row.get("EECNUM") or "") or None)
