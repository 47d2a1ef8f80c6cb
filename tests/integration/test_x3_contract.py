"""One client contract, run against the simulator through every transport the connector has.

Clients are built the production way: a stored (encrypted) connection, `open_client`, the
Postgres token store and the Redis call cap. One database serves the module: each test stores its
connection afresh and forgets the shared access token (a fresh simulator refuses it anyway).
"""

import dataclasses
from datetime import date
from decimal import Decimal

import pytest
import requests

from pipeline import connections, db
from pipeline.x3 import token_store
from pipeline.x3.client import NewInvoice, NewInvoiceLine, NewSupplier
from pipeline.x3.connect import open_client
from pipeline.x3.errors import X3AuthError, X3OutcomeUnknown, X3Unavailable, X3ValidationError

pytestmark = pytest.mark.integration

TRANSPORTS = ["rest", "graphql", "graphql-jwt"]

INVOICE = NewInvoice(
    supplier_code="ACME01", document_number="INV-88121", document_date=date(2026, 11, 1),
    accounting_date=date(2026, 11, 3), due_date=date(2026, 12, 1), invoice_type="INV",
    is_credit_note=False, currency="USD", company="US01", site="US011",
    total_including_tax=Decimal("1260.50"), total_excluding_tax=Decimal("1200.00"),
    description="Hoses",
    lines=(NewInvoiceLine(1, "6100", Decimal("800.00"), Decimal("10"), "Hoses",
                          (("CCT", "PLANT1"),)),
           NewInvoiceLine(2, "6300", Decimal("400.00"), Decimal("1"), "Freight", ())),
)


def store(kind, url, **over):
    if kind == "rest":
        settings = {"url": url, "folder": "SEED", "username": "admin"}
        secret = {"password": "admin"}
    elif kind == "graphql":
        settings = {"url": url, "folder": "SEED", "auth": "oauth", "client_id": "demo",
                    "token_url": f"{url}/oauth/token"}
        secret = {"client_secret": "demo-secret", "refresh_token": "initial-rt"}
    else:
        settings = {"url": url, "folder": "SEED", "auth": "jwt", "client_id": "demo",
                    "x3_user": "ADMIN", "audience": "x3"}
        secret = {"client_secret": "demo-secret"}
    secret.update(over)
    with db.transaction() as cur:
        connections.save(cur, "x3", "x3_rest" if kind == "rest" else "x3_graphql", settings,
                         secret)
        token_store.forget(cur, "x3")


@pytest.fixture(params=TRANSPORTS)
def kind(request):
    return request.param


@pytest.fixture
def client(kind, module_db_env, x3sim):
    store(kind, x3sim)
    with db.transaction() as cur:
        c = open_client(cur)
    yield c
    c.close()


@pytest.fixture
def sim(x3sim):
    class Sim:
        url = x3sim

        def faults(self, **faults):
            requests.post(f"{x3sim}/_sim/faults", json=faults, timeout=5).raise_for_status()

        def state(self):
            return requests.get(f"{x3sim}/_sim/state", timeout=5).json()

        def seed_suppliers(self, suppliers):
            seed = {k: self.state()[k] for k in ("accounts", "dimensions")}
            seed["suppliers"] = suppliers
            requests.post(f"{x3sim}/_sim/seed", json=seed, timeout=5).raise_for_status()

    return Sim()


# --- suppliers -----------------------------------------------------------------------------------


def test_find_supplier_by_tax_id_and_code(client):
    by_tax = client.find_supplier_by_tax_id("94-1234567")
    assert by_tax is not None and by_tax.code == "ACME01"
    assert by_tax.name == "Acme Industrial Supply" and by_tax.tax_id == "94-1234567"
    assert client.find_supplier_by_code("ACME01") == by_tax
    assert client.find_supplier_by_code("NOBODY") is None
    assert client.find_supplier_by_tax_id("00-0000000") is None


def test_find_supplier_by_eu_vat_id(client):
    created = client.create_supplier(NewSupplier("NORD01", "Nordic", None, "DE811", "EUR"))
    assert created.code == "NORD01"
    found = client.find_supplier_by_tax_id("DE811")
    assert found is not None and found.code == "NORD01" and found.tax_id == "DE811"


def test_create_supplier_then_find_it(client, sim):
    new = NewSupplier("O'BRIEN01", "O'Brien Tools", "22-2222222", None, "USD",
                      ("1 Main St", "Unit 2"), "94607", "Oakland", "CA", "US")
    assert client.create_supplier(new).code == "O'BRIEN01"
    found = client.find_supplier_by_tax_id("22-2222222")
    assert found is not None and found.code == "O'BRIEN01" and found.name == "O'Brien Tools"
    stored = next(s for s in sim.state()["suppliers"] if s["BPSNUM"] == "O'BRIEN01")
    assert stored["BPADDRESS"][0]["CTY"] == "Oakland"


@pytest.mark.parametrize(("code", "expected"), [("lower01", "upper case"), ("A" * 16, "15"),
                                                ("ACME01", "already exists")])
def test_create_supplier_refusals_are_validation_errors(client, code, expected):
    with pytest.raises(X3ValidationError) as err:
        client.create_supplier(NewSupplier(code, "x", None, None, "USD"))
    assert any(expected in m for m in err.value.messages)


def test_paging_collects_every_page(client, sim):
    sim.seed_suppliers([{"BPSNUM": f"P{n:03d}", "BPSNAM": "p", "CRN": "11"} for n in range(60)])
    before = sim.state()["stats"]["requests"]
    assert client.find_supplier_by_tax_id("11").code == "P000"
    assert sim.state()["stats"]["requests"] - before >= 2  # REST 20 a page, GraphQL 50


# --- accounts, dimensions ------------------------------------------------------------------------


def test_account_and_dimension_checks(client):
    assert client.account_exists("CONS", "6100") is True
    assert client.account_exists("CONS", "9999") is False
    assert client.account_exists("OTHER", "6100") is False
    assert client.dimension_exists("CCT", "PLANT1") is True
    assert client.dimension_exists("CCT", "PLANT9") is False


# --- invoices ------------------------------------------------------------------------------------


def test_create_invoice_then_find_it_by_supplier_document(client, sim):
    number = client.create_invoice(INVOICE)
    assert number == "SIV000001"
    assert client.find_invoice("ACME01", "INV-88121") == number
    assert client.find_invoice("ACME01", "INV-00000") is None
    stored = sim.state()["invoices"][0]
    assert stored["AMTATI"] == "1260.50" and stored["BPSINVLIG"][0]["AMTNOTLIN"] == "800.00"
    assert stored["BPSINVLIG"][0]["CCE"] == ["PLANT1"] and stored["BPSINVLIG"][1]["CCE"] == []


def test_credit_note(client, sim, kind):
    credit = dataclasses.replace(INVOICE, is_credit_note=True, invoice_type="CRN")
    client.create_invoice(credit)
    stored = sim.state()["invoices"][0]
    assert stored["INVTYP"] == "CRN"
    if kind != "rest":
        assert stored["category"] == "creditNote"


@pytest.mark.parametrize(("change", "named"), [
    ({"supplier_code": "NOBODY"}, "NOBODY"),
    ({"lines": (NewInvoiceLine(1, "9999", Decimal("1"), Decimal("1"), "x", ()),)}, "9999"),
    ({"lines": (NewInvoiceLine(1, "6100", Decimal("1"), Decimal("1"), "x",
                               (("CCT", "PLANT9"),)),)}, "PLANT9"),
    ({"document_number": "X" * 31}, "30"),
])
def test_invoice_refusals_name_what_is_wrong(client, sim, change, named):
    with pytest.raises(X3ValidationError) as err:
        client.create_invoice(dataclasses.replace(INVOICE, **change))
    assert any(named in m for m in err.value.messages), err.value.messages
    assert sim.state()["invoices"] == []


# --- failures ------------------------------------------------------------------------------------


def test_commit_then_drop_is_outcome_unknown_and_the_lookup_finds_it(client, sim):
    sim.faults(drop_next_commits=1)
    with pytest.raises(X3OutcomeUnknown):
        client.create_invoice(INVOICE)
    assert client.find_invoice("ACME01", "INV-88121") == "SIV000001"
    assert sim.state()["stats"]["creates"]["BPSINVOICE"] == 1  # sent once, never re-sent


def test_supplier_create_dropped_is_outcome_unknown(client, sim):
    sim.faults(drop_next_commits=1)
    with pytest.raises(X3OutcomeUnknown):
        client.create_supplier(NewSupplier("DROP01", "Dropped", "33", None, "USD"))
    assert client.find_supplier_by_code("DROP01") is not None


def test_transient_answers_to_reads_are_retried(client, sim):
    sim.faults(next_errors=[503, 500, 429], retry_after=0)
    assert client.account_exists("CONS", "6100") is True


def test_lasting_overload_is_unavailable(client, sim):
    sim.faults(error_rate_503=1.0, retry_after=0)
    with pytest.raises(X3Unavailable):
        client.dimension_exists("CCT", "PLANT1")


def test_overloaded_create_is_not_resent(client, sim):
    sim.faults(next_errors=[503])
    with pytest.raises(X3Unavailable):
        client.create_invoice(INVOICE)
    assert sim.state()["invoices"] == []


def test_unreachable_x3_is_unavailable(kind, module_db_env):
    store(kind, "http://127.0.0.1:9")  # discard port: connection refused
    with db.transaction() as cur:
        c = open_client(cur)
    with pytest.raises(X3Unavailable):
        c.create_invoice(INVOICE) if kind == "rest" else c.account_exists("CONS", "6100")


def test_bad_credentials_are_auth_errors(kind, module_db_env, x3sim):
    bad = {"rest": {"password": "wrong"}, "graphql": {"refresh_token": "not-valid"},
           "graphql-jwt": {"client_secret": "wrong"}}[kind]
    store(kind, x3sim, **bad)
    with db.transaction() as cur:
        c = open_client(cur)
    with pytest.raises(X3AuthError):
        c.find_supplier_by_code("ACME01")


def test_a_revoked_access_token_is_renewed_once(module_db_env, sim):
    store("graphql", sim.url)
    sim.faults(rotate_refresh_tokens=False)  # initial-rt stays valid across the reset below
    with db.transaction() as cur:
        c = open_client(cur)
    assert c.account_exists("CONS", "6100")
    requests.post(f"{sim.url}/_sim/reset", timeout=5).raise_for_status()  # forgets access tokens
    assert c.account_exists("CONS", "6100")  # 401, one renewal, the call again
    assert sim.state()["stats"]["token_refreshes"] == 1
