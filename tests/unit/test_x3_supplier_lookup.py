"""The supplier methods vendor matching uses, on both clients, with `responses`: one query for
tax ids, codes and names; a create without a code (X3 numbers it); an unreadable answer to a
supplier create is an unknown outcome, never a refusal."""

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from pipeline.x3.client import NewSupplier
from pipeline.x3.errors import X3OutcomeUnknown
from pipeline.x3.graphql import GraphQLClient
from pipeline.x3.rest import RestClient

BASE = "https://x3.example"
ROOT = f"{BASE}/api1/x3/erp/SEED"
GQL = f"{BASE}/xtrem/api"


class Tokens:
    def token(self):
        return "t"

    def renew(self, refused):
        return "t"


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)


@responses.activate
def test_rest_find_suppliers_is_one_where_with_or():
    responses.get(f"{ROOT}/BPSUPPLIER", json={"$resources": [
        {"$key": "T1", "BPSNUM": "T1", "BPSNAM": "a", "CRN": "", "EECNUM": "DE1"}]})
    found = RestClient(BASE, "SEED", "u", "p").find_suppliers(
        tax_ids=["DE1", "DE1", "1"], codes=["A/P-7"], names=["O'Neil"])
    assert [(s.code, s.tax_id, s.eu_vat_id) for s in found] == [("T1", "DE1", "DE1")]
    (call,) = responses.calls
    where = parse_qs(urlsplit(call.request.url).query)["where"][0]
    assert where == ("CRN eq 'DE1' or EECNUM eq 'DE1' or CRN eq '1' or EECNUM eq '1'"
                     " or BPSNUM eq 'A/P-7' or BPSNAM eq 'O''Neil'")
    assert RestClient(BASE, "SEED", "u", "p").find_suppliers() == []


@responses.activate
def test_rest_create_without_a_code_lets_x3_number_it():
    responses.post(f"{ROOT}/BPSUPPLIER", status=201,
                   json={"$key": "SUP000001", "BPSNUM": "SUP000001", "BPSNAM": "n"})
    made = RestClient(BASE, "SEED", "u", "p").create_supplier(
        NewSupplier(None, "n", "1", None, "USD"))
    assert made.code == "SUP000001"
    assert "BPSNUM" not in json.loads(responses.calls[0].request.body)


@responses.activate
def test_graphql_find_suppliers_is_one_filter():
    responses.post(GQL, json={"data": {"x3MasterData": {"supplier": {"query": {
        "edges": [{"node": {"code": "T2", "companyName1": "b", "taxIdNumber": "94-1",
                            "europeanUnionVatNumber": ""}}],
        "pageInfo": {"endCursor": None, "hasNextPage": False}}}}}})
    found = GraphQLClient(BASE, "SEED", Tokens()).find_suppliers(
        tax_ids=["94-1"], codes=["V-2002"], names=["Acme"])
    assert [(s.code, s.tax_id, s.eu_vat_id) for s in found] == [("T2", "94-1", None)]
    (call,) = responses.calls
    flt = json.loads(json.loads(call.request.body)["variables"]["filter"])
    assert flt == {"_or": [{"taxIdNumber": {"_in": ["94-1"]}},
                           {"europeanUnionVatNumber": {"_in": ["94-1"]}},
                           {"code": {"_in": ["V-2002"]}}, {"companyName1": {"_in": ["Acme"]}}]}


@responses.activate
def test_graphql_create_without_a_code():
    responses.post(GQL, json={"data": {"x3MasterData": {"supplier": {"create": {
        "code": "SUP000007"}}}}})
    made = GraphQLClient(BASE, "SEED", Tokens()).create_supplier(
        NewSupplier(None, "n", None, "DE9", "EUR"))
    assert made.code == "SUP000007" and made.eu_vat_id == "DE9"
    data = json.loads(responses.calls[0].request.body)["variables"]["data"]
    assert "code" not in data


@pytest.mark.parametrize("data", [{"x3MasterData": {"supplier": None}}, {"x3MasterData": {}},
                                  {"x3MasterData": {"supplier": {"create": {}}}}])
@responses.activate
def test_graphql_unreadable_supplier_create_answer_is_outcome_unknown(data):
    responses.post(GQL, json={"data": data})
    with pytest.raises(X3OutcomeUnknown):
        GraphQLClient(BASE, "SEED", Tokens()).create_supplier(
            NewSupplier("A", "a", None, None, None))
