"""Sage X3 GraphQL (`/xtrem/api`, cloud and xtrem) with OAuth2 or connected-app bearer tokens.

The queries are the contract's, verbatim (section 2 of sage-x3-api.md); only the invoice
package and node names are configurable. A 401 makes the token source renew once and the call
go again once; GraphQL errors arrive with HTTP 200 and are typed by `extensions.code`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any
from urllib.parse import quote

import requests

from pipeline.x3.client import NewInvoice, NewSupplier, Supplier, batches, by_type, confirmed
from pipeline.x3.errors import (
    X3AuthError,
    X3OutcomeUnknown,
    X3ProtocolError,
    X3Unavailable,
    X3ValidationError,
    messages_of,
)
from pipeline.x3.limits import Limiter
from pipeline.x3.tokens import TokenSource
from pipeline.x3.transport import (
    DEFAULT_MAX_RESPONSE_MB,
    RetryPolicy,
    Transport,
    created_key,
    json_object,
    json_or_none,
    plain_url,
    retry_after_seconds,
    status_text,
)

TRANSIENT_CODES = ("SERVICE_UNAVAILABLE", "TIMEOUT")
# A renewed token refused within this many seconds is bad credentials, not expiry.
FRESH_SECONDS = 1.0
MAX_RENEWALS = 4
_clock = time.monotonic  # how long ago a token was renewed (a seam for tests)
MAX_PAGES = 100  # supplier pages of 50 for one tax id or code: more is a server gone wrong

SUPPLIER_QUERY = """query($filter: String, $after: String) { x3MasterData { supplier {
  query(filter: $filter, first: 50, after: $after) {
    edges { node { code companyName1 taxIdNumber europeanUnionVatNumber isActive } }
    pageInfo { endCursor hasNextPage } } } } }"""
SUPPLIER_CREATE = """mutation($data: Supplier_Input!) { x3MasterData { supplier {
  create(data: $data) { code } } } }"""
ACCOUNT_QUERY = """query($filter: String, $after: String) { x3FinanceData { account {
  query(filter: $filter, first: 50, after: $after) {
    edges { node { chartOfAccounts code isActive } } pageInfo { endCursor hasNextPage } } } } }"""
DIMENSION_QUERY = """query($filter: String, $after: String) { x3FinanceData { dimension {
  query(filter: $filter, first: 50, after: $after) {
    edges { node { dimensionType dimension isActive } }
    pageInfo { endCursor hasNextPage } } } } }"""


def invoice_query(package: str, node: str) -> str:
    return (f"query($filter: String) {{ {package} {{ {node} {{ query(filter: $filter) {{\n"
            "  edges { node { id billBySupplier sourceDocument } } } } } }")


def invoice_create(package: str, node: str) -> str:
    # xtrem names a node's input type after the node: supplierBpInvoice -> SupplierBpInvoice_Input
    input_type = node[:1].upper() + node[1:] + "_Input"
    return (f"mutation($data: {input_type}!) {{ {package} {{ {node} {{\n"
            "  create(data: $data) { id } } } }")


def mongo_filter(**equals: str) -> str:
    """The contract's filter: a string holding a Mongo-like object, values compared with _eq."""
    return json.dumps({name: {"_eq": value} for name, value in equals.items()})


class _Unauthorized(X3AuthError):
    """HTTP 401: the token, not necessarily the credentials; renewed once before giving up."""


class GraphQLClient:
    def __init__(self, base_url: str, folder: str, tokens: TokenSource, *, chart: str = "CONS",
                 invoice_package: str = "x3Accounting", invoice_node: str = "supplierBpInvoice",
                 timeout: float = 30.0, connect_timeout: float = 5.0, verify: bool | str = True,
                 limiter: Limiter | None = None, retry: RetryPolicy | None = None,
                 deadline: float | None = None,
                 max_response_mb: float = DEFAULT_MAX_RESPONSE_MB,
                 max_pages: int = MAX_PAGES) -> None:
        self.endpoint = f"{plain_url(base_url).rstrip('/')}/xtrem/api"
        self.folder = folder
        # What the validation cache is keyed by: one X3 endpoint and folder.
        self.scope = f"{self.endpoint}#{quote(folder)}"
        self.chart = chart
        self.invoice_path = (invoice_package, invoice_node)
        self.max_pages = max_pages
        self._tokens = tokens
        self._http = Transport(timeout=timeout, connect_timeout=connect_timeout, verify=verify,
                               limiter=limiter, retry=retry, deadline=deadline,
                               max_response_mb=max_response_mb)

    def __repr__(self) -> str:
        return f"GraphQLClient({self.scope!r})"

    def close(self) -> None:
        self._http.close()

    def authenticate(self, fresh: bool = False) -> None:
        """Obtain a bearer token (what `mlc x3 check` tries first); fresh: a new one from the
        token endpoint, not a cached or shared one."""
        fresh_token = getattr(self._tokens, "fresh", None) if fresh else None
        if fresh_token is not None:
            fresh_token()
        else:
            self._tokens.token()

    # -- operations ---------------------------------------------------------------------------
    def find_supplier_by_tax_id(self, tax_id: str) -> Supplier | None:
        for field in ("taxIdNumber", "europeanUnionVatNumber"):
            nodes = self._suppliers(json.dumps({field: tax_id}))
            if nodes:
                return _supplier(nodes[0])
        return None

    def find_supplier_by_code(self, code: str) -> Supplier | None:
        nodes = self._suppliers(mongo_filter(code=code))
        return _supplier(nodes[0]) if nodes else None

    def find_suppliers(self, *, tax_ids: Sequence[str] = (), codes: Sequence[str] = (),
                       names: Sequence[str] = ()) -> list[Supplier]:
        """Every supplier with any of these tax ids (either field), codes or names: one filter
        (`_or` of `_in`s), literal comparisons; the caller decides what matches."""
        tax, any_of = list(dict.fromkeys(tax_ids)), []
        for field, values in (("taxIdNumber", tax), ("europeanUnionVatNumber", tax),
                              ("code", list(dict.fromkeys(codes))),
                              ("companyName1", list(dict.fromkeys(names)))):
            if values:
                any_of.append({field: {"_in": values}})
        if not any_of:
            return []
        return [_supplier(n) for n in self._suppliers(json.dumps({"_or": any_of}))]

    def create_supplier(self, supplier: NewSupplier) -> Supplier:
        what = "supplier create"
        data = self._call(SUPPLIER_CREATE, {"data": supplier_input(supplier)}, what=what)
        code = created_key(_dig(data, "x3MasterData", "supplier", "create", created=what),
                           "code", what)
        return Supplier(code=code, name=supplier.name,
                        tax_id=supplier.tax_id or supplier.eu_vat_id or None,
                        eu_vat_id=supplier.eu_vat_id or None)

    def account_exists(self, chart: str, account: str) -> bool:
        return account in self.known_accounts(chart, [account])

    def dimension_exists(self, dimension_type: str, value: str) -> bool:
        return (dimension_type, value) in self.known_dimensions([(dimension_type, value)])

    def known_accounts(self, chart: str, accounts: Iterable[str]) -> set[str]:
        """Which of these accounts X3 holds in `chart`."""
        return self._known(ACCOUNT_QUERY, "account", ("chartOfAccounts", chart), "code",
                           accounts)

    def known_dimensions(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (dimension type, value) pairs X3 holds: one query per type and batch."""
        return {(dim_type, v) for dim_type, values in by_type(pairs).items()
                for v in self._known(DIMENSION_QUERY, "dimension",
                                     ("dimensionType", dim_type), "dimension", values)}

    def _known(self, query: str, node: str, group: tuple[str, str], field: str,
               codes: Iterable[str]) -> set[str]:
        """Which `codes` of `field` X3's finance `node` holds under `group`: one query (`_in`)
        per LOOKUP_BATCH codes."""
        found: set[str] = set()
        for chunk in batches(codes):
            flt = json.dumps({group[0]: {"_eq": group[1]}, field: {"_in": chunk}})
            nodes = self._pages(query, ("x3FinanceData", node, "query"), flt)
            found |= confirmed(chunk, nodes, field, group)
        return found

    def find_invoice(self, supplier_code: str, document_number: str) -> str | None:
        package, node = self.invoice_path
        flt = mongo_filter(billBySupplier=supplier_code, sourceDocument=document_number)
        data = self._call(invoice_query(package, node), {"filter": flt})
        nodes = _nodes(data, package, node, "query")
        if not nodes:
            return None
        found = nodes[0].get("id")
        if not isinstance(found, str | int) or isinstance(found, bool) or not str(found):
            raise X3ProtocolError(f"X3 answered a {node} query whose node has no id")
        return str(found)

    def create_invoice(self, invoice: NewInvoice) -> str:
        package, node = self.invoice_path
        what = f"{node} create"
        data = self._call(invoice_create(package, node),
                          {"data": invoice_input(invoice, self.chart)}, what=what)
        return created_key(_dig(data, package, node, "create", created=what), "id", what)

    # -- transport ----------------------------------------------------------------------------
    def _suppliers(self, flt: str) -> list[dict[str, Any]]:
        return self._pages(SUPPLIER_QUERY, ("x3MasterData", "supplier", "query"), flt)

    def _pages(self, query: str, path: tuple[str, ...], flt: str) -> list[dict[str, Any]]:
        """Every matching node, following Relay cursors (never one twice, at most max_pages)."""
        nodes: list[dict[str, Any]] = []
        after: str | None = None
        followed: set[str] = set()
        while True:
            data = self._call(query, {"filter": flt, "after": after})
            nodes.extend(_nodes(data, *path))
            info = _dig(data, *path).get("pageInfo") or {}
            if not isinstance(info, dict) or not info.get("hasNextPage"):
                return nodes
            after = info.get("endCursor")
            if not after or not isinstance(after, str):
                raise X3ProtocolError("X3 said more pages follow but sent no cursor: paging "
                                      "stopped")
            pages = len(followed) + 1
            if pages >= self.max_pages:
                raise X3ProtocolError(f"X3 paging went past {self.max_pages} pages: stopped")
            if after in followed:
                raise X3ProtocolError(f"X3 sent a page cursor already followed (page "
                                      f"{pages + 1}): paging stopped")
            followed.add(after)

    def _call(self, query: str, variables: dict[str, Any], *,
              what: str | None = None) -> dict[str, Any]:
        """One query, or (`what` names it) one mutation: sent once, its answer read as such."""
        mutation = what is not None
        body = {"query": query, "variables": variables}
        answer = partial(_answer, what=what)
        token = self._tokens.token()
        renewed_at: float | None = None
        for _ in range(MAX_RENEWALS + 1):
            headers = {"Authorization": f"Bearer {token}", "x-xtrem-endpoint": self.folder}
            try:
                if mutation:
                    # A 401 is answered before anything is done: re-sending after it is safe.
                    return self._http.write("POST", self.endpoint, answer, what or "mutation",
                                            json=body, headers=headers)
                return self._http.read("POST", self.endpoint, answer, json=body,
                                       headers=headers)
            except _Unauthorized:
                # A renewed token refused at once means the credentials are wrong. One refused
                # after the call spent a while retrying 503s has merely expired meanwhile
                # (short-lived tokens): renew again, a bounded number of times.
                if renewed_at is not None and _clock() - renewed_at < FRESH_SECONDS:
                    raise X3AuthError("X3 refused a freshly renewed access token (HTTP 401 "
                                      "twice in a row): check the connection's credentials"
                                      ) from None
                token = self._tokens.renew(token)
                renewed_at = _clock()
        raise X3AuthError(f"X3 kept refusing renewed access tokens ({MAX_RENEWALS} renewals in"
                          " one call): check the connection's credentials")


# -- mapping ----------------------------------------------------------------------------------
def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def supplier_input(s: NewSupplier) -> dict[str, Any]:
    lines = [line for line in s.address_lines if line]
    address = _compact({
        "code": "A01", "addressLine1": lines[0] if lines else None,
        # The GraphQL address has two lines: what api1 puts on a third joins the second.
        "addressLine2": ", ".join(lines[1:]) or None, "city": s.city, "zipCode": s.postal_code,
        "state": s.state, "country": s.country, "isDefault": True,
    })
    return _compact({
        "code": s.code, "companyName1": s.name, "taxIdNumber": s.tax_id,
        "europeanUnionVatNumber": s.eu_vat_id, "currency": s.currency,
        "addresses": [address] if len(address) > 2 else None,
    })


def invoice_input(inv: NewInvoice, chart: str) -> dict[str, Any]:
    """The contract's invoice input; decimals as strings (binary floats lose cents)."""
    return _compact({
        "company": inv.company, "site": inv.site, "invoiceType": inv.invoice_type,
        "category": "creditNote" if inv.is_credit_note else "invoice",
        "accountingDate": inv.accounting_date.isoformat(),
        "billBySupplier": inv.supplier_code, "currency": inv.currency,
        "sourceDocument": inv.document_number,
        "sourceDocumentDate": inv.document_date.isoformat(),
        "payToBusinessPartner": inv.supplier_code,
        "dueDate": inv.due_date.isoformat() if inv.due_date else None,
        "totalAmountIncludingTax": str(inv.total_including_tax),
        "lines": [
            {"lineNumber": line.line_number, "site": inv.site, "account": line.account,
             "chartOfAccounts": chart, "lineAmountExcludingTax": str(line.amount),
             "quantity": str(line.quantity), "description": line.description,
             "dimensions": [{"dimensionType": t, "dimension": v} for t, v in line.dimensions]}
            for line in inv.lines
        ],
    })


def _supplier(node: dict[str, Any]) -> Supplier:
    code = node.get("code")
    if not isinstance(code, str | int) or isinstance(code, bool) or not str(code):
        raise X3ProtocolError("X3 answered a supplier without a code")
    tax_id = node.get("taxIdNumber") or node.get("europeanUnionVatNumber") or None
    return Supplier(code=str(code), name=str(node.get("companyName1") or ""),
                    tax_id=str(tax_id) if tax_id is not None else None,
                    eu_vat_id=str(node.get("europeanUnionVatNumber") or "") or None)


# -- answers ----------------------------------------------------------------------------------
def _dig(data: dict[str, Any], *path: str, created: str | None = None) -> dict[str, Any]:
    """The object at `path`; missing, it is an unknown outcome for a create (named by
    `created`: it may have happened) and a broken contract for a query."""
    node: Any = data
    for name in path:
        if not isinstance(node, dict) or not isinstance(node.get(name), dict):
            if created:
                raise X3OutcomeUnknown(f"{created} answered without {'.'.join(path)}: the "
                                       "record may exist")
            raise X3ProtocolError(f"X3 GraphQL answer lacks {'.'.join(path)}")
        node = node[name]
    return node


def _nodes(data: dict[str, Any], *path: str) -> list[dict[str, Any]]:
    """The nodes of a query's `edges`, or X3ProtocolError when they are not the contract's."""
    edges = _dig(data, *path).get("edges")
    if not isinstance(edges, list) or not all(
            isinstance(e, dict) and isinstance(e.get("node"), dict) for e in edges):
        raise X3ProtocolError(f"X3 GraphQL answer has no list of nodes at {'.'.join(path)}")
    return [e["node"] for e in edges]


def _messages(body: Any) -> list[str]:
    """errors[].message only, never the raw body (it may echo the request's token)."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    return messages_of([e.get("message") if isinstance(e, dict) else e for e in errors])


def _code(error: Any) -> str:
    extensions = error.get("extensions") if isinstance(error, dict) else None
    return str(extensions.get("code")) if isinstance(extensions, dict) else ""


def _answer(resp: requests.Response, *, what: str | None) -> dict[str, Any]:
    """The `data` of an answer, or the typed error it amounts to. `what` names a mutation: an
    answer to one that cannot be read leaves its outcome unknown, never refused."""
    code = resp.status_code
    status = f"HTTP {status_text(code)}"
    if code >= 400:
        messages = _messages(json_or_none(resp))
        text = f"{status}): {'; '.join(messages)}" if messages else f"{status})"
        if code == 401:
            raise _Unauthorized(f"X3 refused the access token ({text}")
        if code == 403:
            raise X3AuthError(f"X3 refused access ({text}")
        if code == 429 or code >= 500:
            raise X3Unavailable(f"X3 unavailable ({text}",
                                retry_after=retry_after_seconds(resp.headers.get("Retry-After")))
        raise X3ValidationError(f"X3 refused the request ({text}", messages)
    body = json_object(resp)  # Unreadable: the transport says what it was instead
    errors = body.get("errors")
    if errors is not None and not isinstance(errors, list):
        if what:
            raise X3OutcomeUnknown(f"{what} answered {status} with errors that are not a list: "
                                   "the record may exist")
        raise X3ProtocolError(f"X3 answered {status} with errors that are not a list")
    if errors:
        messages = _messages(body) or [f"X3 answered {status} with errors and no message"]
        text = "; ".join(messages)
        codes = {_code(e) for e in errors}
        if "TIMEOUT" in codes and what:
            # X3 gave up waiting on itself: the create may still have happened.
            raise X3OutcomeUnknown(f"X3 timed out on a create: {text}")
        if codes & set(TRANSIENT_CODES):
            raise X3Unavailable(f"X3 unavailable ({', '.join(sorted(codes))}): {text}")
        raise X3ValidationError(f"X3 refused the request: {text}", messages)
    data = body.get("data")
    if not isinstance(data, dict):
        if what:
            raise X3OutcomeUnknown(f"{what} answered {status} without data: the record may "
                                   "exist")
        raise X3ProtocolError(f"X3 answered {status} without data")
    return data
