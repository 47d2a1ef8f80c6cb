"""The simulator's GraphQL endpoint and OAuth over real HTTP: what it enforces of the contract."""

import json
import threading
import time

import pytest
import requests

from pipeline.x3.tokens import sign_hs256
from sandbox.x3sim import make_server

pytestmark = pytest.mark.integration

SUPPLIER_Q = """query($filter: String, $after: String) { x3MasterData { supplier {
  query(filter: $filter, first: 10, after: $after) {
    edges { node { code companyName1 taxIdNumber } } pageInfo { endCursor hasNextPage } } } } }"""
SUPPLIER_M = """mutation($data: Supplier_Input!) { x3MasterData { supplier {
  create(data: $data) { code } } } }"""
INVOICE_M = """mutation($data: SupplierBpInvoice_Input!) { x3Accounting { supplierBpInvoice {
  create(data: $data) { id } } } }"""
INVOICE_Q = """query($filter: String) { x3Accounting { supplierBpInvoice { query(filter: $filter) {
  edges { node { id billBySupplier sourceDocument } } } } } }"""


def serve(**kw):
    server = make_server("127.0.0.1", 0, **kw)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def sim():
    server, base = serve(jwt_audience="x3-sim")
    yield base
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def fresh(sim):
    requests.post(f"{sim}/_sim/reset", timeout=5).raise_for_status()


def grant(sim, refresh="initial-rt", **over):
    body = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": "demo",
            "client_secret": "demo-secret", **over}
    return requests.post(f"{sim}/oauth/token", json=body, timeout=5)


@pytest.fixture
def token(sim):
    return grant(sim).json()["access_token"]


def gql(sim, query, variables=None, token=None, endpoint="SEED"):
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if endpoint is not None:
        headers["x-xtrem-endpoint"] = endpoint
    return requests.post(f"{sim}/xtrem/api", json={"query": query, "variables": variables or {}},
                         headers=headers, timeout=5)


def errors(response):
    return " | ".join(e["message"] for e in response.json()["errors"])


def codes(response):
    return {e["extensions"]["code"] for e in response.json()["errors"]}


def state(sim):
    return requests.get(f"{sim}/_sim/state", timeout=5).json()


def set_faults(sim, **faults):
    requests.post(f"{sim}/_sim/faults", json=faults, timeout=5).raise_for_status()


def invoice(**over):
    data = {"company": "US01", "site": "US011", "invoiceType": "INV", "category": "invoice",
            "accountingDate": "2026-11-03", "billBySupplier": "ACME01", "currency": "USD",
            "sourceDocument": "INV-1", "sourceDocumentDate": "2026-11-01",
            "payToBusinessPartner": "ACME01", "totalAmountIncludingTax": "1260.50",
            "lines": [{"lineNumber": 1, "site": "US011", "account": "6100",
                       "chartOfAccounts": "CONS", "lineAmountExcludingTax": "800.00",
                       "quantity": "10", "description": "hoses",
                       "dimensions": [{"dimensionType": "CCT", "dimension": "PLANT1"}]}]}
    data.update(over)
    return data


def line(**over):
    return [{**invoice()["lines"][0], **over}]


# --- OAuth ---------------------------------------------------------------------------------------


def test_refresh_tokens_rotate_and_the_used_one_is_refused(sim):
    first = grant(sim)
    assert first.status_code == 200
    body = first.json()
    assert body["expires_in"] == 300 and body["refresh_token"] != "initial-rt"
    again = grant(sim)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert grant(sim, body["refresh_token"]).status_code == 200
    assert state(sim)["stats"]["token_refreshes"] == 2


def test_rotation_can_be_switched_off_and_lifetime_set(sim):
    set_faults(sim, rotate_refresh_tokens=False, token_lifetime=2)
    body = grant(sim).json()
    assert body["refresh_token"] == "initial-rt" and body["expires_in"] == 2
    assert grant(sim).status_code == 200


@pytest.mark.parametrize(("over", "status", "error"), [
    ({"client_secret": "nope"}, 401, "invalid_client"),
    ({"client_id": "other"}, 401, "invalid_client"),
    ({"grant_type": "password"}, 400, "unsupported_grant_type"),
    ({"refresh_token": "made-up"}, 400, "invalid_grant"),
])
def test_token_endpoint_refusals(sim, over, status, error):
    response = grant(sim, **over)
    assert response.status_code == status and response.json()["error"] == error


def test_authorize_mints_a_new_refresh_token(sim):
    grant(sim)
    new = requests.post(f"{sim}/_sim/authorize", timeout=5).json()["refresh_token"]
    assert grant(sim, new).status_code == 200


@pytest.mark.parametrize("bearer", [None, "made-up"])
def test_missing_or_unknown_bearer_is_401(sim, bearer):
    response = gql(sim, SUPPLIER_Q, token=bearer)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert codes(response) == {"UNAUTHENTICATED"}


def test_expired_access_token_is_401(sim):
    set_faults(sim, token_lifetime=0.2)
    token = grant(sim).json()["access_token"]
    assert gql(sim, SUPPLIER_Q, token=token).status_code == 200
    deadline = time.monotonic() + 5
    while gql(sim, SUPPLIER_Q, token=token).status_code == 200:
        assert time.monotonic() < deadline, "token never expired"
        time.sleep(0.05)
    assert "expired" in errors(gql(sim, SUPPLIER_Q, token=token))


@pytest.mark.parametrize("endpoint", [None, "OTHER"])
def test_xtrem_endpoint_header_is_enforced(sim, token, endpoint):
    response = gql(sim, SUPPLIER_Q, token=token, endpoint=endpoint)
    assert response.status_code == 400 and "x-xtrem-endpoint" in errors(response)


def jwt(**over):
    iat = int(time.time()) - 5
    claims = {"iss": "demo", "sub": "ADMIN", "aud": "x3-sim", "iat": iat, "exp": iat + 300}
    claims.update(over)
    return sign_hs256(claims, "demo-secret")


def test_connected_app_jwt_is_a_bearer(sim):
    assert gql(sim, SUPPLIER_Q, token=jwt()).status_code == 200


@pytest.mark.parametrize(("offsets", "claims", "reason"), [
    ((60, 120), {}, "future"),  # (iat, exp) relative to now, taken when the test runs
    ((-5, 400), {}, "iat + 300"),
    ((-400, -100), {}, "expired"),
    (None, {"iss": "stranger"}, "issuer"),
    (None, {"aud": "elsewhere"}, "audience"),
    (None, {"sub": ""}, "sub"),
])
def test_bad_jwts_are_401(sim, offsets, claims, reason):
    if offsets:
        now = int(time.time())
        claims = {"iat": now + offsets[0], "exp": now + offsets[1]}
    response = gql(sim, SUPPLIER_Q, token=jwt(**claims))
    assert response.status_code == 401 and reason in errors(response)


def test_jwt_signed_with_another_secret_is_401(sim):
    iat = int(time.time()) - 5
    forged = sign_hs256({"iss": "demo", "sub": "ADMIN", "aud": "x3-sim", "iat": iat,
                         "exp": iat + 300}, "guess")
    assert "signature" in errors(gql(sim, SUPPLIER_Q, token=forged))


# --- queries -------------------------------------------------------------------------------------


@pytest.mark.parametrize("flt", [
    {"taxIdNumber": "94-1234567"},
    {"code": {"_eq": "ACME01"}},
    {"code": {"_in": ["X", "ACME01"]}},
    {"_and": [{"code": {"_eq": "ACME01"}}, {"taxIdNumber": {"_ne": "1"}}]},
    {"_or": [{"code": "nobody"}, {"companyName1": "Acme Industrial Supply"}]},
])
def test_supplier_filters(sim, token, flt):
    response = gql(sim, SUPPLIER_Q, {"filter": json.dumps(flt)}, token=token)
    edges = response.json()["data"]["x3MasterData"]["supplier"]["query"]["edges"]
    assert [e["node"]["code"] for e in edges] == ["ACME01"]
    assert edges[0]["node"] == {"code": "ACME01", "companyName1": "Acme Industrial Supply",
                                "taxIdNumber": "94-1234567"}


@pytest.mark.parametrize(("flt", "expected"), [
    ('{"TAXID": "1"}', "TAXID"),
    ('{"code": {"_like": "A"}}', "_like"),
    ('{"code": ', "Invalid filter"),
    ('["code"]', "object"),
])
def test_bad_filters_are_errors_naming_the_problem(sim, token, flt, expected):
    response = gql(sim, SUPPLIER_Q, {"filter": flt}, token=token)
    assert response.status_code == 200 and response.json()["data"] is None
    assert expected in errors(response)


def test_relay_paging(sim, token):
    for n in range(25):
        r = gql(sim, SUPPLIER_M, {"data": {"code": f"P{n:02d}", "companyName1": "p",
                                           "taxIdNumber": "11"}}, token=token)
        assert r.json()["data"], r.text
    flt, after, pages = json.dumps({"taxIdNumber": "11"}), None, []
    while True:
        body = gql(sim, SUPPLIER_Q, {"filter": flt, "after": after}, token=token).json()
        page = body["data"]["x3MasterData"]["supplier"]["query"]
        pages.append([e["node"]["code"] for e in page["edges"]])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert sum(pages, []) == [f"P{n:02d}" for n in range(25)]


@pytest.mark.parametrize(("query", "variables", "expected"), [
    ("query { x3MasterData { supplier { query { edges { node { code vatNumber } } } } } }",
     {}, "vatNumber"),
    ("query { x3Sales { order { query { edges { node { id } } } } } }", {}, "x3Sales"),
    ("query($f: Int) { x3MasterData { supplier { query(filter: $f) { edges { node { code } } } "
     "} } }", {"f": 1}, "String"),
    ("query { x3MasterData { supplier { query(filter: $f) { edges { node { code } } } } } }",
     {}, "$f"),
    ("query { x3MasterData { supplier { query { edges { node { code } } } } }", {}, "Syntax"),
    ("query { x3MasterData { supplier { create(data: {}) { code } } } }", {}, "create"),
])
def test_queries_outside_the_contract_are_refused(sim, token, query, variables, expected):
    response = gql(sim, query, variables, token=token)
    assert response.status_code == 200 and expected in errors(response)


def test_account_and_dimension_queries(sim, token):
    q = ("query($filter: String) { x3FinanceData { account { query(filter: $filter) { edges { "
         "node { chartOfAccounts code isActive } } } } } }")
    flt = json.dumps({"chartOfAccounts": {"_eq": "CONS"}, "code": {"_eq": "6100"}})
    edges = gql(sim, q, {"filter": flt}, token=token).json()["data"]["x3FinanceData"][
        "account"]["query"]["edges"]
    assert edges == [{"node": {"chartOfAccounts": "CONS", "code": "6100", "isActive": True}}]
    q = q.replace("account", "dimension").replace("chartOfAccounts code", "dimensionType dimension")
    flt = json.dumps({"dimensionType": "CCT", "dimension": {"_in": ["PLANT1", "ADMIN"]}})
    edges = gql(sim, q, {"filter": flt}, token=token).json()["data"]["x3FinanceData"][
        "dimension"]["query"]["edges"]
    assert [e["node"]["dimension"] for e in edges] == ["PLANT1", "ADMIN"]


# --- mutations -----------------------------------------------------------------------------------


def test_supplier_created_through_graphql_is_seen_by_api1(sim, token):
    data = {"code": "NORD01", "companyName1": "Nordic", "europeanUnionVatNumber": "DE8",
            "currency": "EUR", "addresses": [{"code": "A01", "addressLine1": "Str 1",
                                              "city": "Hamburg", "country": "DE",
                                              "isDefault": True}]}
    response = gql(sim, SUPPLIER_M, {"data": data}, token=token)
    assert response.json() == {"data": {"x3MasterData": {"supplier": {"create": {
        "code": "NORD01"}}}}}
    api1 = requests.get(f"{sim}/api1/x3/erp/SEED/BPSUPPLIER('NORD01')",
                        params={"representation": "BPSUPPLIER.$details"},
                        auth=("admin", "admin"), timeout=5).json()
    assert api1["EECNUM"] == "DE8" and api1["BPADDRESS"][0]["CTY"] == "Hamburg"


@pytest.mark.parametrize(("data", "expected"), [
    ({"code": "lower1", "companyName1": "x"}, "upper case"),
    ({"code": "A" * 16, "companyName1": "x"}, "15"),
    ({"code": "ACME01", "companyName1": "x"}, "already exists"),
    ({"code": "NONAME"}, "companyName1"),
    ({"code": "X1", "companyName1": "x", "vat": "1"}, "vat"),
])
def test_supplier_create_validation(sim, token, data, expected):
    response = gql(sim, SUPPLIER_M, {"data": data}, token=token)
    assert expected in errors(response) and codes(response) == {"BAD_USER_INPUT"}
    assert len(state(sim)["suppliers"]) == 1


def test_invoice_created_through_graphql_is_found_by_both_transports(sim, token):
    response = gql(sim, INVOICE_M, {"data": invoice(category="creditNote")}, token=token)
    assert response.json()["data"]["x3Accounting"]["supplierBpInvoice"]["create"] == {
        "id": "SIV000001"}
    flt = json.dumps({"billBySupplier": {"_eq": "ACME01"}, "sourceDocument": {"_eq": "INV-1"}})
    found = gql(sim, INVOICE_Q, {"filter": flt}, token=token).json()["data"]
    assert found["x3Accounting"]["supplierBpInvoice"]["query"]["edges"][0]["node"]["id"] == (
        "SIV000001")
    stored = state(sim)["invoices"][0]
    assert stored["BPR"] == "ACME01" and stored["AMTATI"] == "1260.50"
    assert stored["category"] == "creditNote" and stored["BPSINVLIG"][0]["CCE"] == ["PLANT1"]


@pytest.mark.parametrize(("over", "expected"), [
    ({"billBySupplier": "NOBODY"}, "NOBODY"),
    ({"lines": line(account="9999")}, "9999"),
    ({"lines": line(dimensions=[{"dimensionType": "CCT", "dimension": "PLANT9"}])}, "PLANT9"),
    ({"lines": line(chartOfAccounts="OTHER")}, "OTHER"),
    ({"totalAmountIncludingTax": 1260.5}, "string"),
    ({"lines": line(lineAmountExcludingTax=800)}, "lineAmountExcludingTax"),
    ({"lines": line(quantity=10)}, "quantity"),
    ({"category": "refund"}, "category"),
    ({"sourceDocument": "X" * 31}, "sourceDocument"),
    ({"accountingDate": "03/11/2026"}, "accountingDate"),
    ({"lines": []}, "lines"),
    ({"memo": "x"}, "memo"),
    ({"lines": line(costCenter="A")}, "costCenter"),
])
def test_invoice_create_validation_names_the_problem(sim, token, over, expected):
    response = gql(sim, INVOICE_M, {"data": invoice(**over)}, token=token)
    assert response.json()["data"] is None and expected in errors(response)
    assert state(sim)["invoices"] == []


def test_input_type_must_match_the_node(sim, token):
    wrong = INVOICE_M.replace("SupplierBpInvoice_Input", "Invoice_Input")
    assert "Invoice_Input" in errors(gql(sim, wrong, {"data": invoice()}, token=token))


def test_invoice_names_are_configurable():
    server, base = serve(graphql_invoice_package="zAp", graphql_invoice_node="zSupInv")
    try:
        tok = grant(base).json()["access_token"]
        m = "mutation($data: ZSupInv_Input!) { zAp { zSupInv { create(data: $data) { id } } } }"
        assert gql(base, m, {"data": invoice()}, token=tok).json()["data"]
        assert "x3Accounting" in errors(gql(base, INVOICE_M, {"data": invoice()}, token=tok))
    finally:
        server.shutdown()
        server.server_close()


# --- faults --------------------------------------------------------------------------------------


def test_503_fault_is_service_unavailable_inside_graphql(sim, token):
    set_faults(sim, next_errors=[503])
    response = gql(sim, SUPPLIER_Q, token=token)
    assert response.status_code == 200 and codes(response) == {"SERVICE_UNAVAILABLE"}
    assert gql(sim, SUPPLIER_Q, token=token).json()["data"]


def test_429_and_500_faults_are_http_statuses(sim, token):
    set_faults(sim, next_errors=[429, 500], retry_after=3)
    limited = gql(sim, SUPPLIER_Q, token=token)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    assert gql(sim, SUPPLIER_Q, token=token).status_code == 500


def test_drop_after_commit_applies_to_mutations(sim, token):
    set_faults(sim, drop_next_commits=1)
    assert gql(sim, SUPPLIER_Q, token=token).status_code == 200  # queries are not dropped
    with pytest.raises(requests.ConnectionError):
        gql(sim, INVOICE_M, {"data": invoice()}, token=token)
    assert [i["BPRVCR"] for i in state(sim)["invoices"]] == ["INV-1"]


def test_bad_token_fault_values_are_400(sim):
    for faults in ({"token_lifetime": 0}, {"rotate_refresh_tokens": 1}):
        assert requests.post(f"{sim}/_sim/faults", json=faults, timeout=5).status_code == 400


def test_command_line_seeds_the_oauth_client():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.x3sim", "--port", "0", "--client-id", "cli",
         "--client-secret", "cli-secret", "--refresh-token", "cli-rt"],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.PIPE,
        text=True)
    try:
        base = process.stdout.readline().strip().rsplit(" ", 1)[1]
        answer = requests.post(f"{base}/oauth/token", timeout=5, json={
            "grant_type": "refresh_token", "refresh_token": "cli-rt", "client_id": "cli",
            "client_secret": "cli-secret"})
        assert answer.status_code == 200, answer.text
        assert gql(base, SUPPLIER_Q, token=answer.json()["access_token"]).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- onboarding: consent page, code exchange, regional endpoint ----------------------------------


def consent(sim, **over):
    """The consent page in redirect mode: the callback's parameters, read from Location."""
    from urllib.parse import parse_qs, urlsplit

    params = {"client_id": "demo", "redirect_uri": "http://127.0.0.1:9/callback",
              "state": "s-1", "scope": "api.graphQL", "customer": sim,
              "sim_callback": "redirect", **over}
    r = requests.get(f"{sim}/oauth/authorize", params=params, allow_redirects=False, timeout=5)
    assert r.status_code == 302, r.text
    location = urlsplit(r.headers["Location"])
    assert location.path == "/callback"
    return {k: v[-1] for k, v in parse_qs(location.query).items()}


def exchange(base, issued, **over):
    body = {"grant_type": "authorization_code", "code": issued, "client_id": "demo",
            "client_secret": "demo-secret", "redirect_uri": "http://127.0.0.1:9/callback",
            **over}
    return requests.post(f"{base}/oauth/token", json=body, timeout=5)


def test_consent_calls_back_with_a_one_time_code_for_the_regional_endpoint(sim):
    callback = consent(sim)
    assert callback["state"] == "s-1" and callback["endpoint"] == f"{sim}/eu"
    tokens = exchange(callback["endpoint"], callback["authorizationCode"])
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    again = exchange(callback["endpoint"], callback["authorizationCode"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # The tokens are the region's: its API takes them, the home endpoint does not.
    regional = gql(f"{sim}/eu", SUPPLIER_Q, {"filter": "{}"}, token=body["access_token"])
    assert regional.status_code == 200 and "errors" not in regional.json()
    assert gql(sim, SUPPLIER_Q, token=body["access_token"]).status_code == 401
    refreshed = grant(f"{sim}/eu", body["refresh_token"])
    assert refreshed.status_code == 200
    assert grant(sim, refreshed.json()["refresh_token"]).status_code == 400
    stats = state(sim)["stats"]
    assert stats["code_exchanges"] == 1 and stats["regional_calls"]["/eu/xtrem/api"] == 1
    assert body["refresh_token"] not in json.dumps(state(sim))


@pytest.mark.parametrize(("over", "status", "error"), [
    ({"client_secret": "nope"}, 401, "invalid_client"),
    ({"redirect_uri": "http://127.0.0.1:9/other"}, 400, "invalid_grant"),
    ({"code": "ac-made-up"}, 400, "invalid_grant"),
])
def test_code_exchange_refusals(sim, over, status, error):
    code = consent(sim)["authorizationCode"]
    response = exchange(f"{sim}/eu", code, **over)
    assert response.status_code == status and response.json()["error"] == error


def test_code_of_a_region_is_refused_elsewhere_and_home_region_has_no_endpoint(sim):
    code = consent(sim)["authorizationCode"]
    assert exchange(sim, code).json()["error"] == "invalid_grant"
    home = consent(sim, sim_region="")
    assert "endpoint" not in home
    assert exchange(sim, home["authorizationCode"]).status_code == 200


def test_consent_denied_and_bad_requests(sim):
    denied = consent(sim, sim_consent="deny")
    assert denied["error"] == "access_denied" and "authorizationCode" not in denied
    for over in ({"client_id": "other"}, {"state": ""}, {"redirect_uri": "ftp://x"}):
        params = {"client_id": "demo", "redirect_uri": "http://127.0.0.1:9/cb", "state": "s",
                  **over}
        r = requests.get(f"{sim}/oauth/authorize", params=params, allow_redirects=False,
                         timeout=5)
        assert r.status_code == 400


def test_consent_posts_the_callback_when_asked(sim):
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            seen.append((self.headers["Content-Type"], self.rfile.read(length).decode()))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{receiver.server_address[1]}/callback"
        for mode in ("post", "json"):
            r = requests.get(f"{sim}/oauth/authorize", timeout=5, params={
                "client_id": "demo", "redirect_uri": uri, "state": "s-2", "sim_callback": mode})
            assert r.status_code == 200 and "HTTP 204" in r.text
    finally:
        receiver.shutdown()
        receiver.server_close()
    (form_type, form), (json_type, body) = seen
    assert form_type == "application/x-www-form-urlencoded" and "authorizationCode=ac-" in form
    assert json_type == "application/json" and json.loads(body)["state"] == "s-2"
