"""The GraphQL client's mapping and every error path, with `responses`."""

import json
from datetime import date
from decimal import Decimal

import pytest
import requests
import responses
import urllib3

from pipeline.x3.client import NewInvoice, NewInvoiceLine, NewSupplier
from pipeline.x3.errors import (
    X3AuthError,
    X3OutcomeUnknown,
    X3ProtocolError,
    X3Unavailable,
    X3ValidationError,
)
from pipeline.x3.graphql import GraphQLClient, invoice_create
from pipeline.x3.transport import RetryPolicy

BASE = "https://x3.example"
URL = f"{BASE}/xtrem/api"

INVOICE = NewInvoice(
    supplier_code="V1", document_number="INV-1", document_date=date(2026, 11, 1),
    accounting_date=date(2026, 11, 3), due_date=date(2026, 12, 1), invoice_type="CRN",
    is_credit_note=True, currency="USD", company="US01", site="US011",
    total_including_tax=Decimal("-10.50"), total_excluding_tax=Decimal("-10.00"), description="d",
    lines=(NewInvoiceLine(1, "6100", Decimal("-10.00"), Decimal("1.5"), "x",
                          (("CCT", "PLANT1"), ("PRJ", "P9"))),),
)


class FakeTokens:
    def __init__(self):
        self.n = 0
        self.renewed = []

    def token(self):
        return f"tok{self.n}"

    def renew(self, refused):
        self.renewed.append(refused)
        self.n += 1
        return f"tok{self.n}"


@pytest.fixture
def tokens():
    return FakeTokens()


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)


def client(tokens, **kw):
    return GraphQLClient(BASE, "SEED", tokens, timeout=2, **kw)


def sent(i=0):
    return json.loads(responses.calls[i].request.body)


def ok(data):
    return {"json": {"data": data}}


def error(code, message="boom"):
    return {"json": {"data": None, "errors": [
        {"message": message, "path": ["x"], "extensions": {"code": code}}]}}


def supplier_page(nodes, cursor=None):
    return ok({"x3MasterData": {"supplier": {"query": {
        "edges": [{"node": n} for n in nodes],
        "pageInfo": {"endCursor": cursor, "hasNextPage": cursor is not None}}}}})


@responses.activate
def test_headers_filter_and_relay_paging(tokens):
    responses.post(URL, **supplier_page([], cursor="c1"))
    responses.post(URL, **supplier_page([{"code": "A", "companyName1": "a",
                                          "taxIdNumber": "", "europeanUnionVatNumber": "DE1"}]))
    found = client(tokens).find_supplier_by_code("A")
    assert found is not None and found.code == "A" and found.tax_id == "DE1"
    first, second = sent(0), sent(1)
    assert json.loads(first["variables"]["filter"]) == {"code": {"_eq": "A"}}
    assert first["variables"]["after"] is None and second["variables"]["after"] == "c1"
    assert "first: 50, after: $after" in first["query"]
    request = responses.calls[0].request
    assert request.headers["Authorization"] == "Bearer tok0"
    assert request.headers["x-xtrem-endpoint"] == "SEED"


@responses.activate
def test_tax_id_falls_back_to_eu_vat_number(tokens):
    responses.post(URL, **supplier_page([]))
    responses.post(URL, **supplier_page([{"code": "EU1", "companyName1": "e",
                                          "europeanUnionVatNumber": "DE811"}]))
    assert client(tokens).find_supplier_by_tax_id("DE811").code == "EU1"
    assert json.loads(sent(0)["variables"]["filter"]) == {"taxIdNumber": "DE811"}
    assert json.loads(sent(1)["variables"]["filter"]) == {"europeanUnionVatNumber": "DE811"}


@responses.activate
def test_invoice_input_mapping_credit_note_dimensions_decimals_as_strings(tokens):
    responses.post(URL, **ok({"x3Accounting": {"supplierBpInvoice": {"create": {"id": "S1"}}}}))
    assert client(tokens, chart="CONS").create_invoice(INVOICE) == "S1"
    body = sent()
    assert body["query"].startswith("mutation($data: SupplierBpInvoice_Input!)")
    data = body["variables"]["data"]
    assert data == {
        "company": "US01", "site": "US011", "invoiceType": "CRN", "category": "creditNote",
        "accountingDate": "2026-11-03", "billBySupplier": "V1", "currency": "USD",
        "sourceDocument": "INV-1", "sourceDocumentDate": "2026-11-01",
        "payToBusinessPartner": "V1", "dueDate": "2026-12-01", "totalAmountIncludingTax": "-10.50",
        "lines": [{"lineNumber": 1, "site": "US011", "account": "6100", "chartOfAccounts": "CONS",
                   "lineAmountExcludingTax": "-10.00", "quantity": "1.5", "description": "x",
                   "dimensions": [{"dimensionType": "CCT", "dimension": "PLANT1"},
                                  {"dimensionType": "PRJ", "dimension": "P9"}]}],
    }


@responses.activate
def test_invoice_names_are_configurable(tokens):
    responses.post(URL, **ok({"zAp": {"zInv": {"query": {"edges": [{"node": {"id": "Z1"}}]}}}}))
    c = client(tokens, invoice_package="zAp", invoice_node="zInv")
    assert c.find_invoice("V1", "INV-1") == "Z1"
    assert "{ zAp { zInv { query(filter: $filter)" in sent()["query"]
    assert json.loads(sent()["variables"]["filter"]) == {
        "billBySupplier": {"_eq": "V1"}, "sourceDocument": {"_eq": "INV-1"}}
    assert invoice_create("zAp", "zInv").startswith("mutation($data: ZInv_Input!)")


@responses.activate
def test_supplier_input_mapping(tokens):
    responses.post(URL, **ok({"x3MasterData": {"supplier": {"create": {"code": "NEW1"}}}}))
    s = NewSupplier(code="NEW1", name="New", tax_id=None, eu_vat_id="DE1", currency="EUR",
                    address_lines=("Street 1", "Floor 2", "Door 3"), postal_code="20095",
                    city="Hamburg", country="DE")
    created = client(tokens).create_supplier(s)
    assert created.code == "NEW1" and created.tax_id == "DE1"
    assert sent()["variables"]["data"] == {
        "code": "NEW1", "companyName1": "New", "europeanUnionVatNumber": "DE1", "currency": "EUR",
        "addresses": [{"code": "A01", "addressLine1": "Street 1",
                       "addressLine2": "Floor 2, Door 3", "city": "Hamburg", "zipCode": "20095",
                       "country": "DE", "isDefault": True}]}


@responses.activate
def test_account_and_dimension_filters(tokens):
    responses.post(URL, **ok({"x3FinanceData": {"account": {"query": {"edges": [
        {"node": {"chartOfAccounts": "CONS", "code": "6100", "isActive": True}}]}}}}))
    responses.post(URL, **ok({"x3FinanceData": {"dimension": {"query": {"edges": []}}}}))
    c = client(tokens)
    assert c.account_exists("CONS", "6100") is True
    assert c.dimension_exists("CCT", "NOPE") is False
    assert json.loads(sent(0)["variables"]["filter"]) == {
        "chartOfAccounts": {"_eq": "CONS"}, "code": {"_in": ["6100"]}}
    assert json.loads(sent(1)["variables"]["filter"]) == {
        "dimensionType": {"_eq": "CCT"}, "dimension": {"_in": ["NOPE"]}}


@responses.activate
def test_known_codes_are_asked_in_one_query_per_type_and_only_asked_ones_count(tokens):
    # X3 answers one extra node nobody asked for and one of another chart: neither counts.
    responses.post(URL, **ok({"x3FinanceData": {"account": {"query": {"edges": [
        {"node": {"chartOfAccounts": "CONS", "code": "6100", "isActive": True}},
        {"node": {"chartOfAccounts": "CONS", "code": "9999", "isActive": True}},
        {"node": {"chartOfAccounts": "OTHER", "code": "6300", "isActive": True}}]}}}}))
    for _ in range(2):
        responses.post(URL, **ok({"x3FinanceData": {"dimension": {"query": {"edges": [
            {"node": {"dimensionType": "CCT", "dimension": "P1", "isActive": True}}]}}}}))
    c = client(tokens)
    assert c.known_accounts("CONS", ["6300", "6100", "6300"]) == {"6100"}
    assert c.known_dimensions([("CCT", "P1"), ("CCT", "P2"), ("DEP", "D1")]) == {("CCT", "P1")}
    assert len(responses.calls) == 3
    assert json.loads(sent(0)["variables"]["filter"]) == {
        "chartOfAccounts": {"_eq": "CONS"}, "code": {"_in": ["6100", "6300"]}}
    assert json.loads(sent(1)["variables"]["filter"]) == {
        "dimensionType": {"_eq": "CCT"}, "dimension": {"_in": ["P1", "P2"]}}
    assert json.loads(sent(2)["variables"]["filter"]) == {
        "dimensionType": {"_eq": "DEP"}, "dimension": {"_in": ["D1"]}}


# --- errors --------------------------------------------------------------------------------------


@responses.activate
def test_401_renews_the_token_once_and_retries(tokens):
    responses.post(URL, status=401, json={"errors": [{"message": "expired"}]})
    responses.post(URL, **ok({"x3FinanceData": {"account": {"query": {"edges": []}}}}))
    assert client(tokens).account_exists("CONS", "1") is False
    assert tokens.renewed == ["tok0"]
    assert responses.calls[1].request.headers["Authorization"] == "Bearer tok1"


@responses.activate
def test_a_second_401_in_a_row_is_an_auth_error(tokens):
    responses.post(URL, status=401, json={})
    with pytest.raises(X3AuthError, match="twice"):
        client(tokens).create_invoice(INVOICE)
    assert len(responses.calls) == 2 and tokens.renewed == ["tok0"]


@responses.activate
def test_a_renewed_token_that_expired_during_long_retries_is_renewed_again(tokens,
                                                                          monkeypatch):
    # Short-lived tokens: the renewed one outlived its 3 s while 503s were being retried.
    clock = iter([100.0, 105.0, 110.0])
    monkeypatch.setattr("pipeline.x3.graphql._clock", lambda: next(clock))
    responses.post(URL, status=401, json={})
    responses.post(URL, status=401, json={})
    responses.post(URL, **ok({"x3FinanceData": {"account": {"query": {"edges": []}}}}))
    assert client(tokens).account_exists("CONS", "1") is False
    assert tokens.renewed == ["tok0", "tok1"]


@responses.activate
def test_403_is_an_auth_error_without_renewal(tokens):
    responses.post(URL, status=403, json={})
    with pytest.raises(X3AuthError):
        client(tokens).account_exists("CONS", "1")
    assert tokens.renewed == []


@responses.activate
def test_validation_errors_carry_x3_messages(tokens):
    responses.post(URL, json={"data": None, "errors": [
        {"message": "account '9999' does not exist", "extensions": {"code": "BAD_USER_INPUT"}},
        {"message": "dimension 'X' does not exist", "extensions": {"code": "BAD_USER_INPUT"}}]})
    with pytest.raises(X3ValidationError) as err:
        client(tokens).create_invoice(INVOICE)
    assert err.value.messages == ["account '9999' does not exist", "dimension 'X' does not exist"]
    assert not err.value.transient


@pytest.mark.parametrize("code", ["SERVICE_UNAVAILABLE", "TIMEOUT"])
@responses.activate
def test_transient_graphql_errors_on_reads_are_retried_then_unavailable(tokens, code):
    responses.post(URL, **error(code))
    with pytest.raises(X3Unavailable):
        client(tokens, retry=RetryPolicy(attempts=3)).dimension_exists("CCT", "A")
    assert len(responses.calls) == 3


@responses.activate
def test_transient_graphql_error_then_success(tokens):
    responses.post(URL, **error("SERVICE_UNAVAILABLE"))
    responses.post(URL, **ok({"x3FinanceData": {"dimension": {"query": {"edges": [
        {"node": {"dimensionType": "CCT", "dimension": "A", "isActive": True}}]}}}}))
    assert client(tokens).dimension_exists("CCT", "A") is True


@responses.activate
def test_service_unavailable_on_a_create_is_not_resent(tokens):
    responses.post(URL, **error("SERVICE_UNAVAILABLE"))
    with pytest.raises(X3Unavailable):
        client(tokens).create_invoice(INVOICE)
    assert len(responses.calls) == 1


@responses.activate
def test_timeout_code_on_a_create_is_outcome_unknown(tokens):
    responses.post(URL, **error("TIMEOUT"))
    with pytest.raises(X3OutcomeUnknown):
        client(tokens).create_invoice(INVOICE)
    assert len(responses.calls) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503])
@responses.activate
def test_http_overload_on_reads_honours_retry_after(tokens, monkeypatch, status):
    slept = []
    monkeypatch.setattr("time.sleep", slept.append)
    responses.post(URL, status=status, headers={"Retry-After": "2"}, json={})
    with pytest.raises(X3Unavailable) as err:
        client(tokens).account_exists("CONS", "1")
    assert err.value.retry_after == 2.0
    assert len(responses.calls) == RetryPolicy().attempts
    assert all(2.0 <= s <= 2.4 for s in slept)


@responses.activate
def test_inline_waits_stop_at_the_total_budget(tokens, monkeypatch):
    slept = []
    monkeypatch.setattr("time.sleep", slept.append)
    responses.post(URL, status=503, headers={"Retry-After": "8"}, json={})
    with pytest.raises(X3Unavailable):
        client(tokens).account_exists("CONS", "1")
    assert len(slept) == 2 and sum(slept) <= RetryPolicy().max_total_wait


@responses.activate
def test_long_retry_after_goes_back_to_the_caller_at_once(tokens):
    responses.post(URL, status=503, headers={"Retry-After": "120"}, json={})
    with pytest.raises(X3Unavailable) as err:
        client(tokens).account_exists("CONS", "1")
    assert err.value.retry_after == 120 and len(responses.calls) == 1


@responses.activate
def test_http_4xx_is_a_validation_error(tokens):
    responses.post(URL, status=400, json={"errors": [{"message": "unknown endpoint SEED"}]})
    with pytest.raises(X3ValidationError, match="unknown endpoint"):
        client(tokens).account_exists("CONS", "1")


@responses.activate
def test_create_read_timeout_is_outcome_unknown(tokens):
    responses.post(URL, body=requests.ReadTimeout("slow"))
    with pytest.raises(X3OutcomeUnknown):
        client(tokens).create_invoice(INVOICE)
    assert len(responses.calls) == 1


@responses.activate
def test_create_dropped_connection_is_outcome_unknown(tokens):
    responses.post(URL, body=requests.ConnectionError("Connection aborted"))
    with pytest.raises(X3OutcomeUnknown):
        client(tokens).create_supplier(NewSupplier("A", "a", None, None, None))


@responses.activate
def test_create_refused_connection_is_retried_then_unavailable(tokens):
    refused = requests.ConnectionError(urllib3.exceptions.MaxRetryError(
        None, "/", urllib3.exceptions.NewConnectionError(None, "refused")))
    responses.post(URL, body=refused)
    with pytest.raises(X3Unavailable):
        client(tokens).create_invoice(INVOICE)
    assert len(responses.calls) == RetryPolicy().attempts  # nothing was sent: safe to try again


@responses.activate
def test_read_connection_errors_are_retried(tokens):
    responses.post(URL, body=requests.ConnectionError("reset"))
    responses.post(URL, **ok({"x3FinanceData": {"account": {"query": {"edges": []}}}}))
    assert client(tokens).account_exists("CONS", "1") is False


@responses.activate
def test_answer_without_data_is_a_broken_contract(tokens):
    responses.post(URL, json={"data": None})
    with pytest.raises(X3ProtocolError, match="without data"):
        client(tokens).account_exists("CONS", "1")


def test_repr_shows_no_secret(tokens):
    assert "tok" not in repr(client(tokens))


@responses.activate
def test_every_call_holds_a_limiter_slot(tokens):
    from contextlib import contextmanager

    held = []

    class Counting:
        @contextmanager
        def slot(self):
            held.append(1)
            yield

    responses.post(URL, **error("SERVICE_UNAVAILABLE"))
    responses.post(URL, **ok({"x3FinanceData": {"account": {"query": {"edges": []}}}}))
    client(tokens, limiter=Counting()).account_exists("CONS", "1")
    assert len(held) == 2
