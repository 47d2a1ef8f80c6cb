"""Property: whatever status and body X3 (or a proxy) answers, a client returns a value of the
right type or raises a typed X3Error; never AttributeError, KeyError, TypeError ... And a create
answered 2xx is never a refusal: created, or an unknown outcome."""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal

import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.x3.client import NewInvoice, NewInvoiceLine, NewSupplier, Supplier
from pipeline.x3.errors import X3Error, X3ValidationError
from pipeline.x3.graphql import GraphQLClient
from pipeline.x3.rest import RestClient
from pipeline.x3.transport import RetryPolicy

BASE = "https://x3.example"
INVOICE = NewInvoice(
    supplier_code="V1", document_number="INV-1", document_date=date(2026, 11, 1),
    accounting_date=date(2026, 11, 1), due_date=None, invoice_type="INV", is_credit_note=False,
    currency="USD", company="US01", site="US011", total_including_tax=Decimal("10.00"),
    total_excluding_tax=Decimal("10.00"), description="d",
    lines=(NewInvoiceLine(1, "6100", Decimal("10.00"), Decimal("1"), "x", ()),),
)
SUPPLIER = NewSupplier(code="V1", name="Acme", tax_id="1", eu_vat_id=None, currency="USD")
KEYS = st.sampled_from(["$resources", "$links", "$next", "$url", "$diagnoses", "$message",
                        "$key", "BPSNUM", "NUM", "data", "errors", "message", "extensions",
                        "code", "x3MasterData", "x3FinanceData", "x3Accounting", "supplier",
                        "account", "dimension", "supplierBpInvoice", "query", "create",
                        "edges", "node", "id", "pageInfo", "hasNextPage", "endCursor"])
LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(
    max_size=8) | st.just(f"{BASE}/api1/x3/erp/SEED/BPSUPPLIER?p=2")
JSON = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    KEYS, inner, max_size=4), max_leaves=25)
BODIES = JSON.map(json.dumps).map(str.encode) | st.binary(max_size=40) | st.sampled_from(
    [b"", b"<html>x</html>", b"[" * 5000])
STATUS = st.sampled_from([200, 201, 204, 302, 400, 401, 403, 404, 409, 429, 500, 502, 503])
CALLS = {
    "find_supplier_by_tax_id": (lambda c: c.find_supplier_by_tax_id("1"), (Supplier, type(None))),
    "find_supplier_by_code": (lambda c: c.find_supplier_by_code("V1"), (Supplier, type(None))),
    "account_exists": (lambda c: c.account_exists("CONS", "6100"), (bool,)),
    "dimension_exists": (lambda c: c.dimension_exists("CCT", "A"), (bool,)),
    "find_invoice": (lambda c: c.find_invoice("V1", "INV-1"), (str, type(None))),
    "create_invoice": (lambda c: c.create_invoice(INVOICE), (str,)),
    "create_supplier": (lambda c: c.create_supplier(SUPPLIER), (Supplier,)),
}


class _Tokens:
    def token(self) -> str:
        return "tok-any-answer-0001"

    def renew(self, refused: str) -> str:
        return "tok-any-answer-0002"


def _check(client, name: str, status: int, body: bytes) -> None:
    call, types = CALLS[name]
    try:
        value = call(client)
    except X3Error as exc:
        # A 2xx to a create is never a refusal, unless X3 said why (GraphQL errors, 200).
        if name.startswith("create") and status < 300 and isinstance(exc, X3ValidationError):
            assert isinstance(client, GraphQLClient) and b"errors" in body, exc
        return
    assert isinstance(value, types), (name, value)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(sorted(CALLS)), status=STATUS, body=BODIES)
def test_rest_answers_of_any_shape(name, status, body):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for method in ("GET", "POST"):
            mock.add(method, re.compile(r"https://x3\.example/.*"), status=status, body=body)
        client = RestClient(BASE, "SEED", "u", "pw-any-answer", retry=RetryPolicy(attempts=1),
                            max_pages=3)
        _check(client, name, status, body)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(sorted(CALLS)), status=STATUS, body=BODIES)
def test_graphql_answers_of_any_shape(name, status, body):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add("POST", f"{BASE}/xtrem/api", status=status, body=body)
        client = GraphQLClient(BASE, "SEED", _Tokens(), retry=RetryPolicy(attempts=1),
                               max_pages=3)
        _check(client, name, status, body)
