"""The console through Flask's test client, over a ledger the real pipeline filled."""

from __future__ import annotations

import io
import re

import pytest

from tests.console.helpers import PASSWORD, add_user, csrf, login

pytestmark = pytest.mark.integration


def audit_rows(action: str) -> list[dict]:
    from pipeline import db

    with db.transaction() as cur:
        cur.execute("SELECT * FROM audit_events WHERE stage = 'console'"
                    " AND detail->>'action' = %s ORDER BY id", (action,))
        return list(cur.fetchall())


def test_every_page_needs_a_login(client):
    for path in ("/", "/invoices", "/invoices/1", "/review", "/files", "/files/1", "/activity",
                 "/mappings", "/users", "/report.csv?since=2026-01-01"):
        r = client.get(path)
        assert r.status_code == 302 and "/login" in r.headers["Location"], path


def test_login_sets_a_strict_httponly_cookie_and_security_headers(client):
    add_user("vera", "viewer")
    r = login(client, "vera")
    assert r.status_code == 302
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    page = client.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in page.get_data(as_text=True)
    assert [a["detail"]["by"] for a in audit_rows("login")] == ["vera"]


def test_cookie_is_secure_behind_https(client):
    add_user("vera", "viewer")
    page = client.get("/login", base_url="https://console.example")
    r = client.post("/login", base_url="https://console.example",
                    data={"name": "vera", "password": PASSWORD,
                          "csrf_token": csrf(page.get_data(as_text=True))})
    assert "Secure" in r.headers["Set-Cookie"]
    assert "Strict-Transport-Security" in r.headers


def test_wrong_password_then_rate_limited_per_user(client):
    add_user("olga", "operator")
    for _ in range(5):
        assert login(client, "olga", "wrong password!").status_code == 401
    r = login(client, "olga")  # the right password, too late
    assert r.status_code == 401 and "too many failed logins" in r.get_data(as_text=True)
    refused = audit_rows("login")
    assert refused[-1]["outcome"] == "error" and refused[-1]["detail"]["reason"] == "rate limited"


def test_rate_limited_per_address(client):
    add_user("olga", "operator")
    for i in range(20):
        login(client, f"guess{i}", "wrong password!", address="10.0.0.9")
    assert login(client, "olga", address="10.0.0.9").status_code == 401
    assert login(client, "olga", address="10.0.0.10").status_code == 302


def test_a_post_without_csrf_token_is_refused(client, ledger_filled):
    add_user("olga", "operator")
    login(client, "olga")
    bo = ledger_filled["ids"]["BO-7731"]
    r = client.post(f"/invoices/{bo}/replay", data={"reason": "no token"})
    assert r.status_code == 400 and "security token" in r.get_data(as_text=True)
    r = client.post(f"/invoices/{bo}/replay", data={"reason": "x", "csrf_token": "forged"})
    assert r.status_code == 400
    assert audit_rows("replay") == []


def test_viewer_sees_no_replay_and_a_forged_post_gets_403(client, ledger_filled):
    add_user("vera", "viewer")
    login(client, "vera")
    bo = ledger_filled["ids"]["BO-7731"]
    page = client.get(f"/invoices/{bo}").get_data(as_text=True)
    assert "GL account 7777 does not exist in X3" in page
    assert 'id="replay-button"' not in page
    r = client.post(f"/invoices/{bo}/replay", data={"reason": "forged",
                                                    "csrf_token": csrf(page)})
    assert r.status_code == 403 and "may not do this" in r.get_data(as_text=True)
    assert client.post("/mappings/save", data={"upload_id": "1",
                                               "csrf_token": csrf(page)}).status_code == 403
    assert client.get("/users").status_code == 403


def test_pages_show_the_ledger(client, ledger_filled):
    add_user("ada", "admin")
    login(client, "ada")
    ids = ledger_filled["ids"]
    overview = client.get("/").get_data(as_text=True)
    assert 'data-status="posted">1<' in overview and 'data-status="needs_review">1<' in overview
    assert 'data-status="failed">1<' in overview
    assert "last successful poll" in overview and "<svg" in overview
    listing = client.get("/invoices?status=failed").get_data(as_text=True)
    assert "BO-7731" in listing and "INV-88121" not in listing
    assert "BO-7731" in client.get("/invoices?number=bo-77").get_data(as_text=True)
    assert "BO-7731" not in client.get("/invoices?vendor=V-1001").get_data(as_text=True)
    assert "BO-7731" in client.get("/invoices?company=US01").get_data(as_text=True)
    assert "BO-7731" not in client.get("/invoices?company=US99").get_data(as_text=True)
    by_name = client.get("/invoices?file=invoices_20261103101500.csv").get_data(as_text=True)
    assert "BO-7731" in by_name and "2026/117" in by_name
    assert "No invoice matches" in client.get("/invoices?file=nope.csv").get_data(as_text=True)
    assert "No invoice matches" in client.get("/invoices?since=2099-01-01").get_data(as_text=True)
    by_company = client.get("/?by=company").get_data(as_text=True)
    assert "US01" in by_company
    detail = client.get(f"/invoices/{ids['INV-88121']}").get_data(as_text=True)
    assert 'id="review-diff"' in detail and "Hydraulic hoses revised" in detail
    assert "CC-PLANT1" in detail and "CCT=PLANT1" in detail and "US01/US011" in detail
    assert "invoice_post" in detail and "create_invoice" in detail  # trail and X3 calls
    assert "file_fetch" in detail and "file_parse" in detail  # its file's fetch and parse
    review = client.get("/review").get_data(as_text=True)
    assert "BO-7731" in review and "INV-88121" in review
    files = client.get("/files").get_data(as_text=True)
    file_id = int(re.search(r'href="/files/(\d+)">[^<]*invoices_20261103101500.csv',
                            files).group(1))
    one = client.get(f"/files/{file_id}").get_data(as_text=True)
    assert "Reconciliation" in one and "1260.50" in one
    mappings = client.get("/mappings").get_data(as_text=True)
    assert "CC-PLANT1" in mappings and 'id="preview-button"' in mappings
    report = client.get("/report.csv?since=2026-01-01")
    assert report.mimetype == "text/csv" and "invoices_20261103101500.csv" in report.get_data(
        as_text=True)
    assert client.get("/invoices/999999").status_code == 404


def test_no_secret_is_ever_rendered(client, ledger_filled):
    from pipeline import connections, db

    with db.transaction() as cur:
        conn = connections.load(cur, "stampli")
    secret_bits = [conn.secret["private_key"].splitlines()[1]]
    add_user("ada", "admin")
    login(client, "ada")
    ids = ledger_filled["ids"]
    pages = ["/", "/invoices", "/review", "/files", "/mappings", "/users", "/activity",
             *(f"/invoices/{i}" for i in ids.values())]
    for path in pages:
        body = client.get(path).get_data(as_text=True)
        for bit in secret_bits:
            assert bit not in body, path
        assert "password_hash" not in body and "scrypt$" not in body


def test_operator_replays_and_acknowledges_with_audit(client, ledger_filled, monkeypatch):
    sent = []
    monkeypatch.setattr("workers.send.send_many",
                        lambda name, args_list, *_: sent.extend((name, a) for a in args_list))
    add_user("olga", "operator")
    login(client, "olga")
    ids = ledger_filled["ids"]
    page = client.get(f"/invoices/{ids['BO-7731']}").get_data(as_text=True)
    assert 'id="replay-button"' in page
    r = client.post(f"/invoices/{ids['BO-7731']}/replay",
                    data={"reason": "GL 7777 mapped", "csrf_token": csrf(page)},
                    follow_redirects=True)
    assert "replay queued" in r.get_data(as_text=True)
    assert sent == [("mlc.process_invoice", [ids["BO-7731"]])]
    from ops import reports
    from pipeline import db

    with db.transaction() as cur:
        trail = reports.trail(cur, invoice_id=ids["BO-7731"])
    replay = [e for e in trail if e["stage"] == "replay"][-1]
    assert replay["detail"]["by"] == "olga" and replay["detail"]["reason"] == "GL 7777 mapped"
    # Review: replay refused (as mlc replay refuses it), acknowledge accepted and audited.
    r = client.post(f"/invoices/{ids['INV-88121']}/replay",
                    data={"reason": "try", "csrf_token": csrf(page)}, follow_redirects=True)
    assert "replay refused" in r.get_data(as_text=True) and len(sent) == 1
    r = client.post(f"/invoices/{ids['INV-88121']}/acknowledge",
                    data={"note": "description only", "csrf_token": csrf(page)},
                    follow_redirects=True)
    body = r.get_data(as_text=True)
    assert "Acknowledged by <strong>olga</strong>" in body
    assert "INV-88121" not in client.get("/review").get_data(as_text=True)
    ack = audit_rows("acknowledge")
    assert ack[0]["detail"]["by"] == "olga" and ack[0]["invoice_id"] == ids["INV-88121"]
    activity = client.get("/activity").get_data(as_text=True)
    assert "acknowledge" in activity and "replay" in activity and "GL 7777 mapped" in activity
    assert "description only" in activity and "olga" in activity
    # An operator may not edit mappings.
    assert client.post("/mappings/save", data={"upload_id": "1", "csrf_token": csrf(page)}
                       ).status_code == 403


def _upload(client, page: str, text: str, kind: str = "gl"):
    return client.post("/mappings/preview", data={
        "kind": kind, "csrf_token": csrf(page),
        "file": (io.BytesIO(text.encode()), "gl.csv")}, content_type="multipart/form-data")


def test_mapping_upload_previews_against_x3_then_saves(client, ledger_filled):
    add_user("ada", "admin")
    login(client, "ada")
    page = client.get("/mappings").get_data(as_text=True)
    bad = _upload(client, page, "stampli_code,x3_account\n7777,9999\n").get_data(as_text=True)
    assert "GL account 9999 (chart CONS) does not exist in X3" in bad
    assert 'id="save-button"' not in bad
    good = _upload(client, page, "stampli_code,x3_account\n7777,6500\n").get_data(as_text=True)
    assert "All 1 row(s) are valid in X3" in good and "(unmapped)" in good
    upload_id = re.search(r'name="upload_id" value="(\d+)"', good).group(1)
    r = client.post("/mappings/save", data={"upload_id": upload_id, "csrf_token": csrf(good)},
                    follow_redirects=True)
    assert "1 row(s) saved" in r.get_data(as_text=True)
    # Saved once only.
    again = client.post("/mappings/save", data={"upload_id": upload_id,
                                                "csrf_token": csrf(good)}, follow_redirects=True)
    assert "not saved" in again.get_data(as_text=True)
    from pipeline import db, mapping

    with db.transaction() as cur:
        assert mapping.gl_account(cur, "7777") == "6500"
    saved = audit_rows("mapping_import")
    assert saved[0]["detail"]["by"] == "ada" and saved[0]["detail"]["changes"][0][
        "x3_account"] == "6500"
    missing = _upload(client, page, "code,account\n1,2\n", kind="gl")
    assert "missing column" in client.get("/mappings").get_data(as_text=True) or \
        missing.status_code == 302


def test_idle_session_expires(db_env):
    from console import create_app

    app = create_app({"TESTING": True, "IDLE_SECONDS": -1})
    client = app.test_client()
    add_user("vera", "viewer")
    login(client, "vera")
    r = client.get("/")
    assert r.status_code == 302 and "expired=1" in r.headers["Location"]


def test_disabling_a_user_ends_their_session(client):
    from console import users
    from pipeline import db

    add_user("vera", "viewer")
    login(client, "vera")
    assert client.get("/").status_code == 200
    with db.transaction() as cur:
        users.disable(cur, "vera", by="test")
    assert client.get("/").status_code == 302
    assert login(client, "vera").status_code == 401


def test_admin_adds_and_disables_users(client):
    add_user("ada", "admin")
    login(client, "ada")
    page = client.get("/users").get_data(as_text=True)
    r = client.post("/users", data={"name": "newbie", "role": "viewer",
                                    "password": "long enough pw", "csrf_token": csrf(page)},
                    follow_redirects=True)
    assert "user newbie added" in r.get_data(as_text=True)
    r = client.post("/users/newbie/disable", data={"csrf_token": csrf(page)},
                    follow_redirects=True)
    assert "user newbie disabled" in r.get_data(as_text=True)
    added = [(a["detail"]["user"], a["detail"]["by"]) for a in audit_rows("user_add")]
    assert added == [("ada", "test"), ("newbie", "ada")]


def test_login_next_stays_on_this_site(client):
    add_user("vera", "viewer")
    page = client.get("/login?next=//evil.example/x")
    r = client.post("/login?next=//evil.example/x", data={
        "name": "vera", "password": PASSWORD, "csrf_token": csrf(page.get_data(as_text=True))})
    assert r.headers["Location"] == "/"


def test_a_request_between_login_form_and_post_keeps_the_token_valid(client):
    """Found in the browser: its favicon request ran through the login redirect, which cleared
    the session and with it the login form's CSRF token (the POST then got 400)."""
    add_user("vera", "viewer")
    page = client.get("/login").get_data(as_text=True)
    assert client.get("/favicon.ico").status_code == 204
    client.get("/invoices")  # redirected to the login page: the form's token stays valid
    r = client.post("/login", data={"name": "vera", "password": PASSWORD,
                                    "csrf_token": csrf(page)})
    assert r.status_code == 302


def test_behind_a_tls_proxy_cookies_are_secure_and_limits_see_the_client(db_env, monkeypatch):
    from console import create_app

    monkeypatch.setenv("MLC_CONSOLE_PROXIES", "1")
    client = create_app({"TESTING": True}).test_client()
    add_user("vera", "viewer")
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    page = client.get("/login", headers=proxied)
    r = client.post("/login", headers=proxied, data={
        "name": "vera", "password": PASSWORD, "csrf_token": csrf(page.get_data(as_text=True))})
    assert "Secure" in r.headers["Set-Cookie"]
    assert audit_rows("login")[-1]["detail"]["address"] == "203.0.113.7"
