"""The X3 simulator over real HTTP: what the connector's REST client will rely on."""

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from sandbox.x3sim import make_server

pytestmark = pytest.mark.integration

AUTH = ("admin", "admin")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sim():
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def fresh(sim):
    requests.post(f"{sim}/_sim/reset", timeout=5).raise_for_status()


@pytest.fixture
def api(sim):
    return f"{sim}/api1/x3/erp/SEED"


def query(api, cls, where=None, count=None, auth=AUTH):
    params = {"representation": f"{cls}.$query"}
    if where is not None:
        params["where"] = where
    if count is not None:
        params["count"] = count
    return requests.get(f"{api}/{cls}", params=params, auth=auth, timeout=5)


def create(api, cls, body, auth=AUTH):
    params = {"representation": f"{cls}.$create"}
    return requests.post(f"{api}/{cls}", params=params, json=body, auth=auth, timeout=5)


def messages(response):
    return " | ".join(d["$message"] for d in response.json()["$diagnoses"])


def state(sim):
    return requests.get(f"{sim}/_sim/state", timeout=5).json()


def set_faults(sim, **faults):
    requests.post(f"{sim}/_sim/faults", json=faults, timeout=5).raise_for_status()


def supplier(code, **fields):
    return {"BPSNUM": code, "BPSNAM": f"Supplier {code}", "CUR": "USD", **fields}


def invoice(**overrides):
    body = {
        "BPR": "ACME01",
        "BPRVCR": "INV-88121",
        "BPRDAT": "2026-11-01",
        "ACCDAT": "2026-11-03",
        "INVTYP": "INV",
        "CUR": "USD",
        "AMTATI": "1260.50",
        "AMTNOT": "1200.00",
        "BPSINVLIG": [
            {"LIG": 1, "ACC": "6100", "AMTNOTLIN": "800.00", "QTY": "10",
             "DES": "Hydraulic hose assemblies", "DIE": ["CCT"], "CCE": ["PLANT1"]},
            {"LIG": 2, "ACC": "6300", "AMTNOTLIN": "400.00", "QTY": "1",
             "DES": "Freight, expedited", "DIE": ["CCT"], "CCE": ["PLANT1"]},
        ],
    }  # fmt: skip
    body.update(overrides)
    return body


# --- auth, routing -------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", [None, ("admin", "wrong"), ("other", "admin")])
def test_every_api_call_needs_basic_auth(api, auth):
    response = query(api, "BPSUPPLIER", auth=auth)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert response.json()["$diagnoses"][0]["$severity"] == "error"


def test_unknown_folder_is_404(sim):
    response = requests.get(
        f"{sim}/api1/x3/erp/OTHER/BPSUPPLIER",
        params={"representation": "BPSUPPLIER.$query"},
        auth=AUTH,
        timeout=5,
    )
    assert response.status_code == 404
    assert "OTHER" in messages(response)


@pytest.mark.parametrize("representation", [None, "BPSUPPLIER.$details", "GACCOUNT.$query"])
def test_representation_must_match_class_and_facet(api, representation):
    params = {} if representation is None else {"representation": representation}
    response = requests.get(f"{api}/BPSUPPLIER", params=params, auth=AUTH, timeout=5)
    assert response.status_code == 400
    assert "BPSUPPLIER.$query" in messages(response)


# --- suppliers -----------------------------------------------------------------------------------


def test_seeded_supplier_found_by_tax_id(api):
    response = query(api, "BPSUPPLIER", where="CRN eq '94-1234567'")
    assert response.status_code == 200
    body = response.json()
    assert body["$itemsPerPage"] == 20
    assert [r["$key"] for r in body["$resources"]] == ["ACME01"]
    assert body["$resources"][0]["BPSNAM"] == "Acme Industrial Supply"
    assert "$next" not in body["$links"]


def test_query_pages_follow_next_links(api):
    for n in range(25):
        assert create(api, "BPSUPPLIER", supplier(f"PAGE{n:02d}", CRN="11-1111111")).ok
    url = query(api, "BPSUPPLIER", where="CRN eq '11-1111111'", count=10).url
    pages = []
    while url:
        body = requests.get(url, auth=AUTH, timeout=5).json()
        pages.append([r["$key"] for r in body["$resources"]])
        url = body["$links"].get("$next", {}).get("$url")
        if url:  # absolute, and keeps the filter, facet and page size
            params = parse_qs(urlsplit(url).query)
            assert url.startswith(api)
            assert params["where"] == ["CRN eq '11-1111111'"]
            assert params["representation"] == ["BPSUPPLIER.$query"]
            assert params["count"] == ["10"]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert sum(pages, []) == [f"PAGE{n:02d}" for n in range(25)]


def test_where_handles_quotes_and_boolean_grouping(api):
    create(api, "BPSUPPLIER", supplier("OBRIEN", BPSNAM="O'Brien Tools", CRN="22", CUR="EUR"))
    create(api, "BPSUPPLIER", supplier("NORD", CRN="33", CUR="EUR"))

    def keys(where):
        response = query(api, "BPSUPPLIER", where=where)
        assert response.status_code == 200, response.text
        return sorted(r["$key"] for r in response.json()["$resources"])

    assert keys("BPSNAM eq 'O''Brien Tools'") == ["OBRIEN"]
    assert keys("(CRN eq '22' or CRN eq '94-1234567') and CUR eq 'EUR'") == ["OBRIEN"]
    assert keys("CRN eq '22' or CRN eq '94-1234567' and CUR eq 'EUR'") == ["OBRIEN"]
    assert keys("CUR eq 'EUR' or CUR eq 'USD'") == ["ACME01", "NORD", "OBRIEN"]
    assert keys("CRN eq 'nobody'") == []


def test_where_unknown_property_is_500_naming_it(api):
    response = query(api, "BPSUPPLIER", where="TAXID eq '94-1234567'")
    assert response.status_code == 500
    assert "TAXID" in messages(response)


def test_where_syntax_error_is_400(api):
    response = query(api, "BPSUPPLIER", where="CRN eq '94-1234567")
    assert response.status_code == 400


def test_read_supplier_details(api):
    params = {"representation": "BPSUPPLIER.$details"}
    response = requests.get(f"{api}/BPSUPPLIER('ACME01')", params=params, auth=AUTH, timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert body["$key"] == "ACME01"
    assert body["BPADDRESS"][0]["CTY"] == "Oakland"
    missing = requests.get(f"{api}/BPSUPPLIER('NOPE')", params=params, auth=AUTH, timeout=5)
    assert missing.status_code == 404


def test_create_supplier_answers_201_with_location(sim, api):
    address = {"BPAADD": "A01", "BPAADDLIG": ["Industriestr. 12", "", ""], "POSCOD": "20095",
               "CTY": "Hamburg", "SAT": "", "CRY": "DE"}  # fmt: skip
    body = supplier("NORDIC01", BPSNAM="Nordic Fasteners, Inc.", EECNUM="DE811234567",
                    CUR="EUR", BPADDRESS=[address])  # fmt: skip
    response = create(api, "BPSUPPLIER", body)
    assert response.status_code == 201, response.text
    assert response.json()["BPSNUM"] == "NORDIC01"
    location = response.headers["Location"]
    assert location.startswith(api) and "NORDIC01" in location
    read = requests.get(location, auth=AUTH, timeout=5)
    assert read.status_code == 200
    assert read.json()["BPADDRESS"] == [address]
    assert state(sim)["stats"]["creates"]["BPSUPPLIER"] == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (supplier("lower01"), "upper case"),
        (supplier("A" * 16), "15"),
        (supplier("ACME01"), "already exists"),
        ({"BPSNUM": "NONAME"}, "BPSNAM"),
        ({"BPSNAM": "No code"}, "BPSNUM"),
    ],
)
def test_create_supplier_validation(sim, api, body, expected):
    response = create(api, "BPSUPPLIER", body)
    assert response.status_code == 400
    assert expected in messages(response)
    assert len(state(sim)["suppliers"]) == 1


def test_invalid_json_body_is_400(api):
    response = requests.post(
        f"{api}/BPSUPPLIER",
        params={"representation": "BPSUPPLIER.$create"},
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        auth=AUTH,
        timeout=5,
    )
    assert response.status_code == 400


# --- accounts, dimensions ------------------------------------------------------------------------


def test_account_and_dimension_queries(api):
    account = query(api, "GACCOUNT", where="COA eq 'CONS' and ACC eq '6100'").json()
    assert account["$resources"] == [
        {"$key": "CONS~6100", "COA": "CONS", "ACC": "6100", "ENAFLG": True}
    ]
    assert (
        query(api, "GACCOUNT", where="COA eq 'CONS' and ACC eq '9999'").json()["$resources"] == []
    )
    dimension = query(api, "CACCE", where="DIE eq 'CCT' and CCE eq 'PLANT1'").json()
    assert [r["$key"] for r in dimension["$resources"]] == ["CCT~PLANT1"]
    assert dimension["$resources"][0]["ENAFLG"] is True
    assert len(query(api, "CACCE").json()["$resources"]) == 3


# --- invoices ------------------------------------------------------------------------------------


def test_create_invoice_and_find_it_by_supplier_document(sim, api):
    response = create(api, "BPSINVOICE", invoice())
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["NUM"] == "SIV000001"
    assert requests.get(response.headers["Location"], auth=AUTH, timeout=5).json()["NUM"] == (
        "SIV000001"
    )
    found = query(api, "BPSINVOICE", where="BPR eq 'ACME01' and BPRVCR eq 'INV-88121'").json()
    assert [r["NUM"] for r in found["$resources"]] == ["SIV000001"]
    stored = state(sim)["invoices"][0]
    assert stored["BPSINVLIG"][1]["AMTNOTLIN"] == "400.00"
    assert stored["AMTATI"] == "1260.50"


def test_duplicate_supplier_document_is_accepted_so_double_posting_shows(sim, api):
    assert create(api, "BPSINVOICE", invoice()).status_code == 201
    second = create(api, "BPSINVOICE", invoice())
    assert second.status_code == 201
    assert second.json()["NUM"] == "SIV000002"
    assert state(sim)["stats"]["creates"]["BPSINVOICE"] == 2


def _line(**overrides):
    line = {"LIG": 1, "ACC": "6100", "AMTNOTLIN": "800.00", "QTY": "10", "DES": "x",
            "DIE": ["CCT"], "CCE": ["PLANT1"]}  # fmt: skip
    line.update(overrides)
    return [line]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"BPR": "NOBODY"}, "NOBODY"),
        ({"BPSINVLIG": _line(ACC="9999")}, "9999"),
        ({"BPSINVLIG": _line(CCE=["PLANT9"])}, "PLANT9"),
        ({"BPSINVLIG": _line(DIE=["CCT", "CCT"])}, "DIE"),
        ({"AMTATI": 1260.5}, "AMTATI"),
        ({"AMTNOT": 1200}, "AMTNOT"),
        ({"BPSINVLIG": _line(AMTNOTLIN=800.0)}, "AMTNOTLIN"),
        ({"BPSINVLIG": _line(QTY=10)}, "QTY"),
        ({"AMTATI": "1,260.50"}, "AMTATI"),
        ({"BPRVCR": "X" * 31}, "BPRVCR"),
        ({"BPRDAT": "11/01/2026"}, "BPRDAT"),
        ({"ACCDAT": None}, "ACCDAT"),
        ({"CUR": None}, "CUR"),
        ({"BPSINVLIG": []}, "BPSINVLIG"),
    ],
)
def test_create_invoice_validation(sim, api, overrides, expected):
    response = create(api, "BPSINVOICE", invoice(**overrides))
    assert response.status_code == 400, response.text
    assert expected in messages(response)
    assert state(sim)["invoices"] == []


def test_numbers_for_decimals_are_refused_as_numbers(api):
    response = create(api, "BPSINVOICE", invoice(AMTATI=1260.5))
    assert "string" in messages(response)


def test_invoice_class_name_is_configurable():
    server = make_server("127.0.0.1", 0, invoice_class="ZSIVINV", folder="TEST")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        api = f"http://{host}:{port}/api1/x3/erp/TEST"
        assert create(api, "ZSIVINV", invoice()).status_code == 201
        assert create(api, "BPSINVOICE", invoice()).status_code == 404
        assert query(api, "ZSIVINV").json()["$resources"][0]["NUM"] == "SIV000001"
    finally:
        server.shutdown()
        server.server_close()


# --- faults, state, reset ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 429])
def test_overload_faults_carry_retry_after(sim, api, status):
    set_faults(sim, **{f"error_rate_{status}": 1.0, "retry_after": 7})
    response = query(api, "BPSUPPLIER")
    assert response.status_code == status
    assert response.headers["Retry-After"] == "7"
    assert response.json()["$diagnoses"]
    assert requests.get(f"{sim}/_sim/state", timeout=5).ok  # controls are never faulted


def test_error_500_fault_creates_nothing(sim, api):
    set_faults(sim, error_rate_500=1.0)
    assert create(api, "BPSINVOICE", invoice()).status_code == 500
    assert state(sim)["invoices"] == []


def test_next_errors_are_answered_once_each_in_order(sim, api):
    set_faults(sim, next_errors=[503, 500])
    assert [query(api, "BPSUPPLIER").status_code for _ in range(3)] == [503, 500, 200]


def test_drop_after_commit_creates_but_never_answers(sim, api):
    set_faults(sim, drop_after_commit_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        create(api, "BPSINVOICE", invoice())
    snapshot = state(sim)
    assert [i["BPRVCR"] for i in snapshot["invoices"]] == ["INV-88121"]
    assert snapshot["stats"]["creates"]["BPSINVOICE"] == 1
    set_faults(sim, drop_after_commit_rate=0.0)
    found = query(api, "BPSINVOICE", where="BPR eq 'ACME01' and BPRVCR eq 'INV-88121'")
    assert len(found.json()["$resources"]) == 1


def test_max_concurrency_answers_503_beyond_the_cap(sim, api):
    set_faults(sim, max_concurrency=1, latency_ms=1000)
    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses = sorted(pool.map(lambda _: query(api, "BPSUPPLIER").status_code, range(2)))
    assert statuses == [200, 503]
    assert state(sim)["stats"]["max_in_flight"] == 2


def test_bad_fault_settings_are_400(sim):
    for faults in ({"error_rate_503": 2}, {"nonsense": 1}, {"latency_ms": -1}):
        response = requests.post(f"{sim}/_sim/faults", json=faults, timeout=5)
        assert response.status_code == 400, faults


def test_state_counts_requests(sim, api):
    query(api, "BPSUPPLIER")
    query(api, "GACCOUNT")
    stats = state(sim)["stats"]
    assert stats["requests"] == 2
    assert stats["creates"] == {"BPSUPPLIER": 0, "BPSINVOICE": 0}


def test_reset_restores_seed_and_clears_faults(sim, api):
    create(api, "BPSUPPLIER", supplier("TEMP01"))
    create(api, "BPSINVOICE", invoice())
    set_faults(sim, error_rate_503=1.0)
    requests.post(f"{sim}/_sim/reset", timeout=5).raise_for_status()
    snapshot = state(sim)
    assert [s["BPSNUM"] for s in snapshot["suppliers"]] == ["ACME01"]
    assert snapshot["invoices"] == []
    assert len(snapshot["accounts"]) == 5
    assert snapshot["stats"]["requests"] == 0
    assert query(api, "BPSUPPLIER").status_code == 200
    assert create(api, "BPSINVOICE", invoice()).json()["NUM"] == "SIV000001"


def test_seed_replaces_master_data(sim, api):
    seed = {
        "suppliers": [{"BPSNUM": "V2", "BPSNAM": "Two", "CRN": "2"}],
        "accounts": [{"COA": "CONS", "ACC": "7000"}],
        "dimensions": [{"DIE": "CCT", "CCE": "LAB"}],
    }
    assert requests.post(f"{sim}/_sim/seed", json=seed, timeout=5).ok
    assert [r["$key"] for r in query(api, "GACCOUNT").json()["$resources"]] == ["CONS~7000"]
    line = _line(ACC="7000", CCE=["LAB"])
    assert create(api, "BPSINVOICE", invoice(BPR="V2", BPSINVLIG=line)).status_code == 201
    bad = requests.post(f"{sim}/_sim/seed", json={"vendors": []}, timeout=5)
    assert bad.status_code == 400


def test_command_line_server_starts_and_stops_on_sigterm():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.x3sim", "--port", "0", "--folder", "CLI"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("X3 simulator listening on http://127.0.0.1:"), line
        base = line.rsplit(" ", 1)[1]
        api = f"{base}/api1/x3/erp/CLI"
        assert query(api, "BPSUPPLIER").status_code == 200
        process.terminate()
        assert process.wait(timeout=10) == 0
        assert process.stderr.read() == ""  # quiet without --verbose
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
