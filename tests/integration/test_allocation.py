"""Several dimensions per line and routing to X3 companies/sites, through both X3 transports
(the simulator validates every dimension value, and stores GraphQL lines with their site)."""

import csv
import io
import json
import shutil

import pytest
import requests

from pipeline import connections, db, ledger, mapping
from pipeline.audit import TaskContext
from pipeline.config import settings
from pipeline.run_once import process_invoice
from pipeline.stampli import poll
from tests.conftest import SAMPLES
from tests.integration.conftest import client, sim_state

pytestmark = pytest.mark.integration
CTX = TaskContext(task_id="test", attempt=1)


def edit_lines(invoice_id, change):
    with db.transaction() as cur:
        cur.execute("SELECT payload FROM invoices WHERE id = %s", (invoice_id,))
        payload = cur.fetchone()["payload"]
        for line in payload["lines"]:
            change(line)
        cur.execute("UPDATE invoices SET payload = %s WHERE id = %s",
                    (json.dumps(payload), invoice_id))


@pytest.fixture(params=["rest", "graphql"])
def transport(request, connected):
    """The x3 connection through each transport (`connected` stores the REST one)."""
    if request.param == "graphql":
        url = connected["x3"]
        with db.transaction() as cur:
            connections.save(cur, "x3", "x3_graphql", {
                "url": url, "folder": "SEED", "auth": "oauth", "client_id": "demo",
                "token_url": f"{url}/oauth/token",
            }, {"client_secret": "demo-secret", "refresh_token": "initial-rt"})
    return request.param


@pytest.fixture
def seeded(connected, transport):
    url = connected["x3"]
    state = requests.get(f"{url}/_sim/state", timeout=5).json()
    seed = {k: state[k] for k in ("suppliers", "accounts", "dimensions")}
    seed["dimensions"] += [{"DIE": "PRJ", "CCE": "P100"}, {"DIE": "PRJ", "CCE": "P200"}]
    requests.post(f"{url}/_sim/seed", json=seed, timeout=5).raise_for_status()
    return connected


def test_cost_center_and_project_on_every_line(parsed, seeded, transport, tmp_path):
    projects = tmp_path / "prj.csv"
    projects.write_text("stampli_code,dimension_value\nPROJ-100,P100\n")
    with db.transaction() as cur:
        mapping.import_csv(cur, "dimension", projects, dimension_type="PRJ")
    invoice_id = parsed["INV-88121"]
    edit_lines(invoice_id, lambda ln: ln.update(dimensions={"PRJ": "PROJ-100"}))
    assert process_invoice(invoice_id, client(), CTX) == "posted"
    (doc,) = sim_state(seeded["x3"])["invoices"]
    assert ("category" in doc) == (transport == "graphql")  # came through that transport
    assert [(ln["DIE"], ln["CCE"]) for ln in doc["BPSINVLIG"]] == [
        (["CCT", "PRJ"], ["PLANT1", "P100"]), (["CCT", "PRJ"], ["PLANT1", "P100"])]


def test_unknown_project_fails_naming_line_type_and_value(parsed, seeded):
    invoice_id = parsed["BO-7731"]
    edit_lines(invoice_id, lambda ln: ln.update(dimensions={"PRJ": "P999"}))
    assert process_invoice(invoice_id, client(), CTX) == "failed"
    with db.transaction() as cur:
        cur.execute("SELECT last_error FROM invoices WHERE id = %s", (invoice_id,))
        error = cur.fetchone()["last_error"]
    assert "line 1: dimension PRJ value P999 does not exist in X3" in error
    assert "line 2: dimension PRJ value P999" in error
    assert sim_state(seeded["x3"])["invoices"] == []


def test_locations_route_to_companies_and_sites(parsed, connected, transport, tmp_path):
    routes = tmp_path / "routes.csv"
    routes.write_text("location,company,site\nPlant East,US01,US011\nPlant West,US02,US021\n")
    with db.transaction() as cur:
        mapping.import_csv(cur, "route", routes)
    edit_lines(parsed["INV-88121"], lambda ln: ln.update(location="plant east"))
    edit_lines(parsed["2026/117"], lambda ln: ln.update(location="Plant West"))
    edit_lines(parsed["BO-7731"], lambda ln: ln.update(location="Atlantis"))
    c = client()
    outcomes = {n: process_invoice(i, c, CTX) for n, i in parsed.items()}
    assert outcomes == {"INV-88121": "posted", "2026/117": "posted", "BO-7731": "failed"}
    stored = sim_state(connected["x3"])["invoices"]
    docs = {d["BPRVCR"]: (d["CPY"], d["FCY"]) for d in stored}
    assert docs == {"INV-88121": ("US01", "US011"), "2026/117": ("US02", "US021")}
    if transport == "graphql":  # lines[].site: every line posted to its invoice's site
        assert {d["BPRVCR"]: {ln["FCY"] for ln in d["BPSINVLIG"]} for d in stored} == {
            "INV-88121": {"US011"}, "2026/117": {"US021"}}
    with db.transaction() as cur:
        cur.execute("SELECT last_error FROM invoices WHERE id = %s", (parsed["BO-7731"],))
        assert "location 'Atlantis' has no route to an X3 company and site" in \
            cur.fetchone()["last_error"]


@pytest.fixture
def project_layout(tmp_path, monkeypatch):
    """MLC_STAMPLI_LAYOUT names a layout whose `Project` column feeds the X3 dimension PRJ."""
    path = tmp_path / "layout.json"
    path.write_text(json.dumps({"dimensions": {"project": "PRJ"}}))
    monkeypatch.setenv("MLC_STAMPLI_LAYOUT", str(path))
    settings.cache_clear()
    ledger.layout.cache_clear()
    yield path
    settings.cache_clear()
    ledger.layout.cache_clear()


def export_with_projects(export_dir, projects):
    """The sample export plus a `Project` column: {invoice number: project}."""
    shutil.copy(SAMPLES / "vendors_20261103101500.csv", export_dir)
    with open(SAMPLES / "invoices_20261103101500.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    out = io.StringIO(newline="")
    number = rows[0].index("invoice_number")
    csv.writer(out).writerows([rows[0] + ["Project"]]
                              + [row + [projects[row[number]]] for row in rows[1:]])
    (export_dir / "invoices_20261103101500.csv").write_text(out.getvalue(), encoding="utf-8")


def test_project_column_of_the_export_lands_on_every_line(seeded, transport, project_layout,
                                                          tmp_path):
    """Parsed from the file (no payload edited by hand): a mapped project, an unmapped one
    that passes through, and one X3 does not know, which fails its invoice before posting."""
    projects = tmp_path / "prj.csv"
    projects.write_text("stampli_code,dimension_value\nPROJ-100,P100\n")
    with db.transaction() as cur:
        mapping.import_csv(cur, "dimension", projects, dimension_type="PRJ")
    export_with_projects(seeded["sftp"].export_dir,
                         {"INV-88121": "PROJ-100", "BO-7731": "P200", "2026/117": "P999"})
    poll.poll(CTX)
    for file_id in poll.poll(CTX).new_file_ids:
        ledger.parse_file(CTX, file_id)
    with db.transaction() as cur:
        cur.execute("SELECT id, payload FROM invoices")
        stored = {r["payload"]["invoice_number"]: r for r in cur.fetchall()}
    assert [ln["dimensions"] for ln in stored["INV-88121"]["payload"]["lines"]] == [
        {"PRJ": "PROJ-100"}, {"PRJ": "PROJ-100"}]

    c = client()
    outcomes = {n: process_invoice(r["id"], c, CTX) for n, r in stored.items()}
    assert outcomes == {"INV-88121": "posted", "BO-7731": "posted", "2026/117": "failed"}
    docs = {d["BPRVCR"]: [(ln["DIE"], ln["CCE"]) for ln in d["BPSINVLIG"]]
            for d in sim_state(seeded["x3"])["invoices"]}
    assert ("category" in sim_state(seeded["x3"])["invoices"][0]) == (transport == "graphql")
    assert docs == {
        "INV-88121": [(["CCT", "PRJ"], ["PLANT1", "P100"])] * 2,
        "BO-7731": [(["CCT", "PRJ"], ["ADMIN", "P200"])] * 2,
    }
    with db.transaction() as cur:
        cur.execute("SELECT last_error FROM invoices WHERE id = %s", (stored["2026/117"]["id"],))
        assert "line 1: dimension PRJ value P999 does not exist in X3" in \
            cur.fetchone()["last_error"]
