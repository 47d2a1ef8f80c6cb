"""The REST api1 client's error paths, with `responses` (the only place it is used)."""

from datetime import date
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from pipeline.x3.client import NewInvoice, NewInvoiceLine
from pipeline.x3.errors import X3AuthError, X3OutcomeUnknown, X3Unavailable, X3ValidationError
from pipeline.x3.rest import RestClient, sdata_literal

BASE = "https://x3.example"
ROOT = f"{BASE}/api1/x3/erp/SEED"


def client() -> RestClient:
    return RestClient(BASE, "SEED", "admin", "pw", timeout=2)


INVOICE = NewInvoice(
    supplier_code="V1", document_number="A'1", document_date=date(2026, 11, 1),
    accounting_date=date(2026, 11, 1), due_date=None, invoice_type="INV", is_credit_note=False,
    currency="USD", company="US01", site="US011", total_including_tax=Decimal("10.00"),
    total_excluding_tax=Decimal("10.00"), description="d",
    lines=(NewInvoiceLine(1, "6100", Decimal("10.00"), Decimal("1"), "x", (("CCT", "A"),)),),
)


def test_literal_quotes_are_doubled():
    assert sdata_literal("O'Brien") == "'O''Brien'"


@responses.activate
def test_paging_follows_next_links():
    responses.get(f"{ROOT}/BPSUPPLIER", json={
        "$resources": [{"$key": "A", "BPSNUM": "A", "BPSNAM": "a", "CRN": "1"}],
        "$links": {"$next": {"$url": f"{ROOT}/BPSUPPLIER?page=2"}}})
    responses.get(f"{ROOT}/BPSUPPLIER?page=2", json={"$resources": []})
    found = client().find_supplier_by_code("A")
    assert found is not None and found.code == "A" and found.tax_id == "1"
    assert len(responses.calls) == 2
    assert "BPSNUM+eq+%27A%27" in responses.calls[0].request.url


@responses.activate
def test_bad_credentials_are_an_auth_error():
    responses.get(f"{ROOT}/GACCOUNT", status=401,
                  json={"$diagnoses": [{"$severity": "error", "$message": "bad login"}]})
    with pytest.raises(X3AuthError, match="bad login"):
        client().account_exists("CONS", "6100")


@responses.activate
def test_validation_error_carries_messages_and_decimals_travel_as_strings():
    responses.post(f"{ROOT}/BPSINVOICE", status=400,
                   json={"$diagnoses": [{"$severity": "error", "$message": "Account 6100?"}]})
    with pytest.raises(X3ValidationError) as err:
        client().create_invoice(INVOICE)
    assert err.value.messages == ["Account 6100?"]
    import json
    body = json.loads(responses.calls[0].request.body)
    assert body["AMTATI"] == "10.00" and body["BPSINVLIG"][0]["AMTNOTLIN"] == "10.00"
    assert body["BPSINVLIG"][0]["DIE"] == ["CCT"] and body["BPSINVLIG"][0]["CCE"] == ["A"]


@responses.activate
def test_overloaded_get_retried_then_unavailable_with_retry_after(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    responses.get(f"{ROOT}/CACCE", status=503, headers={"Retry-After": "7"}, json={})
    with pytest.raises(X3Unavailable) as err:
        client().dimension_exists("CCT", "A")
    assert err.value.retry_after == 7.0
    assert len(responses.calls) == 3


@responses.activate
def test_create_timeout_is_outcome_unknown():
    responses.post(f"{ROOT}/BPSINVOICE", body=requests.ReadTimeout("slow"))
    with pytest.raises(X3OutcomeUnknown):
        client().create_invoice(INVOICE)


@responses.activate
def test_create_refused_connection_is_unavailable():
    import urllib3

    refused = requests.ConnectionError(urllib3.exceptions.MaxRetryError(
        None, "/", urllib3.exceptions.NewConnectionError(None, "refused")))
    responses.post(f"{ROOT}/BPSINVOICE", body=refused)
    with pytest.raises(X3Unavailable):
        client().create_invoice(INVOICE)


@responses.activate
def test_create_returns_document_number():
    responses.post(f"{ROOT}/BPSINVOICE", status=201, json={"NUM": "SIV1", "BPR": "V1"},
                   headers={"Location": f"{ROOT}/BPSINVOICE('SIV1')"})
    assert client().create_invoice(INVOICE) == "SIV1"


@responses.activate
def test_forbidden_is_an_auth_error():
    responses.get(f"{ROOT}/BPSUPPLIER", status=403, json={})
    with pytest.raises(X3AuthError):
        client().find_supplier_by_code("A")


@pytest.mark.parametrize("status", [429, 500, 502, 504])
@responses.activate
def test_transient_statuses_on_reads_are_retried_then_succeed(monkeypatch, status):
    monkeypatch.setattr("time.sleep", lambda s: None)
    responses.get(f"{ROOT}/GACCOUNT", status=status, json={})
    responses.get(f"{ROOT}/GACCOUNT",
                  json={"$resources": [{"$key": "CONS~6100", "COA": "CONS", "ACC": "6100"}]})
    assert client().account_exists("CONS", "6100") is True
    assert len(responses.calls) == 2


@responses.activate
def test_known_codes_are_asked_in_one_query_per_type_and_only_asked_ones_count():
    # X3 answers a row nobody asked for and one of another chart: neither counts as known.
    responses.get(f"{ROOT}/GACCOUNT", json={"$resources": [
        {"$key": "CONS~6100", "COA": "CONS", "ACC": "6100"},
        {"$key": "CONS~9999", "COA": "CONS", "ACC": "9999"},
        {"$key": "OTHER~6300", "COA": "OTHER", "ACC": "6300"}]})
    responses.get(f"{ROOT}/CACCE", json={"$resources": [{"DIE": "CCT", "CCE": "O'Hara"}]})
    responses.get(f"{ROOT}/CACCE", json={"$resources": []})
    c = client()
    assert c.known_accounts("CONS", ["6300", "6100", "6300"]) == {"6100"}
    assert c.known_dimensions([("CCT", "O'Hara"), ("CCT", "P2"), ("DEP", "D1")]) == {
        ("CCT", "O'Hara")}
    wheres = [parse_qs(urlsplit(c.request.url).query)["where"][0] for c in responses.calls]
    assert wheres == ["COA eq 'CONS' and (ACC eq '6100' or ACC eq '6300')",
                      "DIE eq 'CCT' and (CCE eq 'O''Hara' or CCE eq 'P2')",
                      "DIE eq 'DEP' and (CCE eq 'D1')"]


@responses.activate
def test_read_connection_errors_and_timeouts_are_retried(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    responses.get(f"{ROOT}/CACCE", body=requests.ConnectionError("reset"))
    responses.get(f"{ROOT}/CACCE", body=requests.ReadTimeout("slow"))
    responses.get(f"{ROOT}/CACCE", json={"$resources": []})
    assert client().dimension_exists("CCT", "A") is False


@responses.activate
def test_long_retry_after_is_handed_back_without_sleeping(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: pytest.fail("slept"))
    responses.get(f"{ROOT}/CACCE", status=503, headers={"Retry-After": "600"}, json={})
    with pytest.raises(X3Unavailable) as err:
        client().dimension_exists("CCT", "A")
    assert err.value.retry_after == 600


@responses.activate
def test_create_connection_dropped_after_sending_is_outcome_unknown():
    responses.post(f"{ROOT}/BPSINVOICE", body=requests.ConnectionError("Connection aborted"))
    with pytest.raises(X3OutcomeUnknown):
        client().create_invoice(INVOICE)
    assert len(responses.calls) == 1


@responses.activate
def test_overloaded_create_is_unavailable_and_not_resent():
    responses.post(f"{ROOT}/BPSINVOICE", status=503, headers={"Retry-After": "1"}, json={})
    with pytest.raises(X3Unavailable):
        client().create_invoice(INVOICE)
    assert len(responses.calls) == 1


@responses.activate
def test_every_attempt_holds_a_limiter_slot(monkeypatch):
    from contextlib import contextmanager

    monkeypatch.setattr("time.sleep", lambda s: None)
    held = []

    class Counting:
        @contextmanager
        def slot(self):
            held.append(1)
            yield

    responses.get(f"{ROOT}/GACCOUNT", status=503, json={})
    responses.get(f"{ROOT}/GACCOUNT", json={"$resources": []})
    RestClient(BASE, "SEED", "admin", "pw", limiter=Counting()).account_exists("CONS", "1")
    assert len(held) == 2


def test_repr_hides_the_password():
    assert "pw" not in repr(client())


@responses.activate
def test_create_answered_without_a_number_is_outcome_unknown_not_none():
    responses.post(f"{ROOT}/BPSINVOICE", status=201, json={"BPR": "V1"})
    with pytest.raises(X3OutcomeUnknown, match="without NUM"):
        client().create_invoice(INVOICE)


@responses.activate
def test_create_unreadable_success_body_is_outcome_unknown():
    responses.post(f"{ROOT}/BPSINVOICE", status=201, body="<html>ok</html>")
    with pytest.raises(X3OutcomeUnknown, match="with an HTML page, not a JSON object: the record"):
        client().create_invoice(INVOICE)


@responses.activate
def test_create_is_never_turned_into_a_get_by_a_redirect():
    responses.post(f"{ROOT}/BPSINVOICE", status=301,
                   headers={"Location": "https://elsewhere.example/BPSINVOICE"})
    responses.get("https://elsewhere.example/BPSINVOICE", json={"NUM": "FAKE"})
    with pytest.raises(X3OutcomeUnknown, match="redirect"):
        client().create_invoice(INVOICE)
    assert len(responses.calls) == 1


@responses.activate
def test_a_code_x3_matched_despite_case_or_padding_is_known():
    """X3's own comparison matched it (a case-insensitive collation, a padded column): as
    before the batched queries, the code counts as known (found by review)."""
    responses.get(f"{ROOT}/GACCOUNT", json={"$resources": [{"COA": "cons", "ACC": "6100 "}]})
    responses.get(f"{ROOT}/CACCE", json={"$resources": [{"DIE": "CCT", "CCE": "PLANT1"}]})
    assert client().known_accounts("CONS", ["6100"]) == {"6100"}
    assert client().known_dimensions([("CCT", "plant1"), ("CCT", "P2")]) == {("CCT", "plant1")}
