"""Hostile X3 answers (issue 12): a real HTTP server on loopback says what a broken or malicious
X3 (or a proxy in front of it) could say. Each case asserts its exact typed error and that no
secret (the password, base64 of user:password, the bearer token) reached any sink: the exception,
what the audit row and invoices.last_error would hold, the log records, the Celery retry."""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from datetime import date
from decimal import Decimal

import pytest
from cryptography.fernet import Fernet

from pipeline import audit, logs
from pipeline.x3.client import NewInvoice, NewInvoiceLine, NewSupplier
from pipeline.x3.errors import (
    X3AuthError,
    X3Error,
    X3OutcomeUnknown,
    X3ProtocolError,
    X3Unavailable,
    X3ValidationError,
)
from pipeline.x3.graphql import GraphQLClient
from pipeline.x3.rest import RestClient
from pipeline.x3.tokens import MemoryTokenStore, RefreshTokens
from pipeline.x3.transport import RetryPolicy
from tests.hostile import hostile_server, self_signed

USER = "svc-mlc"
PASSWORD = "Pa55-hostile-7Qx!"  # noqa: S105
LOGIN = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
TOKEN = "eyJhbGciOiJIUzI1NiJ9.hostile-bearer-token.c2lnbmF0dXJl"  # noqa: S105
SECRETS = (PASSWORD, LOGIN, TOKEN, LOGIN.rstrip("="))

INVOICE = NewInvoice(
    supplier_code="V1", document_number="INV-1", document_date=date(2026, 11, 1),
    accounting_date=date(2026, 11, 1), due_date=None, invoice_type="INV", is_credit_note=False,
    currency="USD", company="US01", site="US011", total_including_tax=Decimal("10.00"),
    total_excluding_tax=Decimal("10.00"), description="d",
    lines=(NewInvoiceLine(1, "6100", Decimal("10.00"), Decimal("1"), "x", ()),),
)
SUPPLIER = NewSupplier(code="V1", name="Acme", tax_id="1", eu_vat_id=None, currency="USD")
ONE_TRY = RetryPolicy(attempts=1)


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    from pipeline.config import settings

    monkeypatch.setenv("DATABASE_URL", "postgresql://127.0.0.1/unused")
    monkeypatch.setenv("MLC_SECRET_KEYS", Fernet.generate_key().decode())
    settings.cache_clear()
    getattr(logs, "install_masking", lambda: None)()
    yield
    settings.cache_clear()


@pytest.fixture
def x3():
    with hostile_server() as server:
        yield server


@pytest.fixture
def evil():
    with hostile_server() as server:
        yield server


def rest(server, **kw) -> RestClient:
    kw.setdefault("retry", ONE_TRY)
    return RestClient(server.url, "SEED", USER, PASSWORD, timeout=2, **kw)


class _Tokens:
    def token(self) -> str:
        logs.register_secret(TOKEN)
        return TOKEN

    def renew(self, refused: str) -> str:
        return TOKEN


def gql(server, **kw) -> GraphQLClient:
    kw.setdefault("retry", ONE_TRY)
    return GraphQLClient(server.url, "SEED", _Tokens(), timeout=2, **kw)


# -- the sinks --
class _Cursor:
    def __init__(self) -> None:
        self.stored: list[str] = []

    def execute(self, sql, params=()) -> None:
        self.stored.extend(str(p) for p in params)

    def fetchone(self) -> dict:
        return {"status": "failed"}


class _Retried(Exception):
    pass


def _retry_exception(exc: Exception, monkeypatch) -> Exception:
    """What MlcTask.retry_later hands Celery (Flower stores its repr)."""
    import tasks.invoice  # noqa: F401  registers the tasks
    from workers.app import app

    task = app.tasks["mlc.process_invoice"]
    handed: list[Exception] = []

    def retry(exc=None, countdown=None, max_retries=None, **_):
        handed.append(exc)
        return _Retried()

    monkeypatch.setattr(task, "retry", retry)
    task.push_request(id="task-hostile", retries=0)
    try:
        with pytest.raises(_Retried):
            task.retry_later(exc)
    finally:
        task.pop_request()
    return handed[0]


def sinks(exc: Exception, caplog, monkeypatch) -> list[str]:
    cur = _Cursor()
    audit.record(cur, "invoice_post", "error", invoice_id=1, error=str(exc),
                 error_type=type(exc).__name__, messages=getattr(exc, "messages", None))
    retried = _retry_exception(exc, monkeypatch)
    return [str(exc), repr(exc), *map(str, getattr(exc, "messages", [])), *cur.stored,
            f"{type(exc).__name__}: {exc}",  # invoices.last_error, as tasks/invoice.py writes it
            str(retried), repr(retried), caplog.text,
            *(r.getMessage() for r in caplog.records)]


def assert_clean(exc: Exception, caplog, monkeypatch) -> None:
    for text in sinks(exc, caplog, monkeypatch):
        for secret in SECRETS:
            assert secret not in text, f"secret reached a sink: {text[:300]!r}"


def echo_page(status: int):
    """An error page that echoes the request's Authorization header, as some proxies do."""
    def script(h, seen):
        auth = seen.headers.get("Authorization", "")
        h.reply(status, f"<html><body><h1>Error {status}</h1><pre>Authorization: {auth}\n"
                        f"login {LOGIN} password {PASSWORD}</pre></body></html>",
                content_type="text/html")
    return script


def raises(kind, call):
    with pytest.raises(X3Error) as err:
        call()
    assert type(err.value) is kind, f"{type(err.value).__name__}: {err.value}"
    return err.value


# -- bodies that echo secrets --
def test_401_html_page_echoing_basic_auth(x3, caplog, monkeypatch):
    x3.answer(echo_page(401))
    exc = raises(X3AuthError, lambda: rest(x3).account_exists("CONS", "6100"))
    assert str(exc) == "X3 refused the credentials (HTTP 401 Unauthorized)"
    assert x3.seen[0].headers["Authorization"] == f"Basic {LOGIN}"
    assert_clean(exc, caplog, monkeypatch)


def test_500_html_page_echoing_basic_auth_is_transient_and_bodiless(x3, caplog, monkeypatch):
    x3.answer(echo_page(500))
    exc = raises(X3Unavailable, lambda: rest(x3).account_exists("CONS", "6100"))
    assert str(exc) == "X3 unavailable (HTTP 500 Internal Server Error)"
    assert_clean(exc, caplog, monkeypatch)


def test_diagnoses_echoing_the_header_and_password_are_masked(x3, caplog, monkeypatch):
    def script(h, seen):
        h.reply(400, {"$diagnoses": [
            {"$severity": "error", "$message": f"bad header {seen.headers['Authorization']}"},
            {"$severity": "error", "$message": f"user {USER} password {PASSWORD}"},
            {"$severity": "error", "$message": f"raw {LOGIN}"}]})
    x3.answer(script)
    exc = raises(X3ValidationError, lambda: rest(x3).create_invoice(INVOICE))
    assert exc.messages == ["bad header Basic ***", f"user {USER} password ***", "raw ***"]
    assert str(exc) == ("X3 refused the request (HTTP 400 Bad Request): bad header Basic ***; "
                        f"user {USER} password ***; raw ***")
    assert_clean(exc, caplog, monkeypatch)


def test_reason_phrase_echoing_the_login_is_not_kept(x3, caplog, monkeypatch):
    x3.answer(lambda h, seen: h.reply(403, b"", reason=f"Forbidden Basic {LOGIN}"))
    exc = raises(X3AuthError, lambda: rest(x3).find_supplier_by_code("V1"))
    assert str(exc) == "X3 refused the credentials (HTTP 403 Forbidden)"
    assert_clean(exc, caplog, monkeypatch)


def test_diagnoses_are_capped_in_number_and_length_and_lose_control_characters(
        x3, caplog, monkeypatch):
    many = [{"$message": f"\x1b[31mline {i}\r\n" + "x" * 1000} for i in range(50)]
    x3.always(400, {"$diagnoses": many})
    exc = raises(X3ValidationError, lambda: rest(x3).find_invoice("V1", "INV-1"))
    assert len(exc.messages) == 5
    assert exc.messages[0].startswith("[31mline 0 xxx") and len(exc.messages[0]) == 200
    assert all("\x1b" not in m and "\n" not in m for m in exc.messages)
    assert len(str(exc)) < 1200
    assert_clean(exc, caplog, monkeypatch)


# -- bodies of any shape --
@pytest.mark.parametrize(("status", "body", "kind", "text"), [
    (400, [1, 2], X3ValidationError, "X3 refused the request (HTTP 400 Bad Request)"),
    (400, "a string", X3ValidationError, "X3 refused the request (HTTP 400 Bad Request)"),
    (500, 42, X3Unavailable, "X3 unavailable (HTTP 500 Internal Server Error)"),
    (401, None, X3AuthError, "X3 refused the credentials (HTTP 401 Unauthorized)"),
    (400, {"$diagnoses": "not a list"}, X3ValidationError,
     "X3 refused the request (HTTP 400 Bad Request)"),
    (400, {"$diagnoses": [1, None, {"$message": 7}]}, X3ValidationError,
     "X3 refused the request (HTTP 400 Bad Request): 7"),
])
def test_error_bodies_of_any_shape(x3, caplog, monkeypatch, status, body, kind, text):
    x3.always(status, json.dumps(body))
    exc = raises(kind, lambda: rest(x3).find_supplier_by_code("V1"))
    assert str(exc) == text
    assert_clean(exc, caplog, monkeypatch)


@pytest.mark.parametrize(("body", "content_type", "shown"), [
    (b"[]", "application/json", "a JSON list"),
    (b'"ok"', "application/json", "a JSON string"),
    (b"null", "application/json", "JSON null"),
    (b"", "application/json", "an empty body"),
    (b"<html>maintenance</html>", "text/html", "an HTML page"),
    (b"[" * 200_000, "application/json", "JSON nested too deeply"),
])
def test_2xx_read_that_is_not_a_json_object_is_transient(x3, caplog, monkeypatch, body,
                                                         content_type, shown):
    x3.always(200, body, content_type=content_type)
    exc = raises(X3Unavailable, lambda: rest(x3).find_supplier_by_code("V1"))
    assert str(exc) == f"X3 answered HTTP 200 OK with {shown}, not a JSON object"
    assert_clean(exc, caplog, monkeypatch)


@pytest.mark.parametrize("page", [
    {"$resources": "nope"}, {"$resources": [1, "x"]}, {"$resources": [], "$links": []},
    {"$resources": [], "$links": {"$next": {"$url": 5}}},
])
def test_2xx_query_of_the_wrong_shape_is_a_protocol_error(x3, caplog, monkeypatch, page):
    x3.always(200, page)
    exc = raises(X3ProtocolError, lambda: rest(x3).find_supplier_by_code("V1"))
    assert str(exc).startswith("X3 answered a BPSUPPLIER query page that is not the contract's")
    assert_clean(exc, caplog, monkeypatch)


def test_retry_after_that_is_not_a_number_does_not_break_the_retry(x3, caplog, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    x3.always(503, {}, headers={"Retry-After": "nan"})
    exc = raises(X3Unavailable, lambda: rest(x3, retry=RetryPolicy(attempts=2))
                 .find_supplier_by_code("V1"))
    assert str(exc) == "X3 unavailable (HTTP 503 Service Unavailable)"
    assert exc.retry_after is None and len(x3.seen) == 2


# -- creates: an answer that cannot be read is an unknown outcome --
@pytest.mark.parametrize(("status", "body", "shown"), [
    (201, b"<html>created, probably</html>", "an HTML page"),
    (201, b"", "an empty body"),
    (200, b"[]", "a JSON list"),
])
def test_rest_create_with_an_unreadable_2xx_is_outcome_unknown(x3, caplog, monkeypatch, status,
                                                               body, shown):
    x3.always(status, body, content_type="text/html")
    exc = raises(X3OutcomeUnknown, lambda: rest(x3).create_invoice(INVOICE))
    reason = f"{status} Created" if status == 201 else "200 OK"
    assert str(exc) == (f"BPSINVOICE create answered HTTP {reason} with {shown}, not a JSON "
                        "object: the record may exist")
    assert_clean(exc, caplog, monkeypatch)


OK = "supplierBpInvoice create answered HTTP 200 OK with"


@pytest.mark.parametrize(("body", "text"), [
    ("<html>ok</html>", f"{OK} an HTML page, not a JSON object"),
    ("", f"{OK} an empty body, not a JSON object"),
    ({"data": None}, f"{OK}out data"),
    ({}, f"{OK}out data"),
    ({"data": "yes"}, f"{OK}out data"),
    ({"data": {"x3Accounting": None}, "errors": "not a list"},
     f"{OK} errors that are not a list"),
    ({"data": {"x3Accounting": {"supplierBpInvoice": {"create": None}}}},
     "supplierBpInvoice create answered without x3Accounting.supplierBpInvoice.create"),
    ({"data": {"x3Accounting": {"supplierBpInvoice": {"create": {"id": None}}}}},
     "supplierBpInvoice create answered without id"),
])
def test_graphql_create_with_an_unreadable_answer_is_outcome_unknown(x3, caplog, monkeypatch,
                                                                     body, text):
    x3.always(200, body, content_type="text/html" if isinstance(body, str) else
              "application/json")
    exc = raises(X3OutcomeUnknown, lambda: gql(x3).create_invoice(INVOICE))
    assert str(exc) == f"{text}: the record may exist"
    assert_clean(exc, caplog, monkeypatch)


@pytest.mark.parametrize("status", [502, 504])
def test_a_gateway_giving_up_on_a_create_is_an_unknown_outcome(x3, caplog, monkeypatch,
                                                                status):
    x3.answer(echo_page(status))
    reason = "502 Bad Gateway" if status == 502 else "504 Gateway Timeout"
    exc = raises(X3OutcomeUnknown, lambda: rest(x3).create_invoice(INVOICE))
    assert str(exc) == (f"BPSINVOICE create answered HTTP {reason} (a gateway in front of X3 "
                        "gave up): the record may exist")
    exc = raises(X3OutcomeUnknown, lambda: gql(x3).create_supplier(SUPPLIER))
    assert str(exc).startswith(f"supplier create answered HTTP {reason} (a gateway")
    assert_clean(exc, caplog, monkeypatch)
    # A read answered so is merely unavailable: it is tried again later.
    raises(X3Unavailable, lambda: rest(x3).find_invoice("V1", "INV-1"))


def test_graphql_validation_error_stays_a_refusal_and_is_masked(x3, caplog, monkeypatch):
    def script(h, seen):
        h.reply(200, {"data": None, "errors": [
            {"message": f"invalid account; request had {seen.headers['Authorization']}",
             "extensions": {"code": "BAD_USER_INPUT"}}]})
    x3.answer(script)
    exc = raises(X3ValidationError, lambda: gql(x3).create_supplier(SUPPLIER))
    assert exc.messages == ["invalid account; request had Bearer ***"]
    assert str(exc) == "X3 refused the request: invalid account; request had Bearer ***"
    assert x3.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert_clean(exc, caplog, monkeypatch)


def test_graphql_401_page_echoing_the_bearer_token(x3, caplog, monkeypatch):
    x3.answer(echo_page(401))
    exc = raises(X3AuthError, lambda: gql(x3).account_exists("CONS", "6100"))
    assert str(exc) == ("X3 refused a freshly renewed access token (HTTP 401 twice in a row): "
                        "check the connection's credentials")
    assert_clean(exc, caplog, monkeypatch)


@pytest.mark.parametrize(("status", "kind", "text"), [
    (500, X3Unavailable, "X3 unavailable (HTTP 500 Internal Server Error)"),
    (503, X3Unavailable, "X3 unavailable (HTTP 503 Service Unavailable)"),
    (403, X3AuthError, "X3 refused access (HTTP 403 Forbidden)"),
    (400, X3ValidationError, "X3 refused the request (HTTP 400 Bad Request)"),
])
def test_graphql_error_pages_echoing_the_bearer_token(x3, caplog, monkeypatch, status, kind,
                                                      text):
    x3.answer(echo_page(status))
    exc = raises(kind, lambda: gql(x3).find_invoice("V1", "INV-1"))
    assert str(exc) == text
    assert x3.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert_clean(exc, caplog, monkeypatch)


def test_graphql_error_messages_are_capped_and_masked(x3, caplog, monkeypatch):
    def script(h, seen):
        errors = [{"message": f"{i}: {seen.headers['Authorization']} " + "y" * 500}
                  for i in range(20)] + ["bare string", 42, None]
        h.reply(200, {"data": None, "errors": errors})
    x3.answer(script)
    exc = raises(X3ValidationError, lambda: gql(x3).create_invoice(INVOICE))
    assert len(exc.messages) == 5 and all(len(m) <= 200 for m in exc.messages)
    assert exc.messages[0].startswith("0: Bearer *** yyy")
    assert_clean(exc, caplog, monkeypatch)


def test_graphql_redirect_and_huge_answers_on_a_query(x3, evil, caplog, monkeypatch):
    x3.always(307, b"", headers={"Location": f"{evil.url}/xtrem/api?token={TOKEN}"})
    exc = raises(X3ProtocolError, lambda: gql(x3).account_exists("CONS", "6100"))
    assert str(exc) == (f"X3 answered a redirect (HTTP 307 Temporary Redirect to {evil.url}):"
                        " not followed, check the X3 URL")
    assert evil.seen == []
    assert_clean(exc, caplog, monkeypatch)
    x3.answer(lambda h, seen: h.flood(4, chunked=True))
    exc = raises(X3Unavailable, lambda: gql(x3, max_response_mb=1).account_exists("C", "1"))
    assert str(exc) == "X3 answer larger than 1 MB: not read"


def test_rest_create_redirect_names_only_the_origin(x3, evil, caplog, monkeypatch):
    x3.always(302, b"", headers={
        "Location": f"{evil.url.replace('//', f'//{USER}:{PASSWORD}@')}/BPSINVOICE?x={LOGIN}"})
    exc = raises(X3OutcomeUnknown, lambda: rest(x3).create_invoice(INVOICE))
    assert str(exc) == (f"BPSINVOICE create answered with a redirect (HTTP 302 Found to "
                        f"{evil.url}): check the X3 URL; the record may exist")
    assert evil.seen == []
    assert_clean(exc, caplog, monkeypatch)


@pytest.mark.parametrize("body", [[], "x", {"data": {"x3FinanceData": []}},
                                  {"data": {"x3FinanceData": {"account": {"query": {
                                      "edges": "x"}}}}}])
def test_graphql_query_answers_of_any_shape_are_typed(x3, caplog, monkeypatch, body):
    x3.always(200, body)
    with pytest.raises((X3Unavailable, X3ProtocolError)) as err:
        gql(x3).account_exists("CONS", "6100")
    assert_clean(err.value, caplog, monkeypatch)


# -- paging --
def _page(next_url: str | None) -> dict:
    page: dict = {"$resources": [{"$key": "A", "BPSNUM": "A", "BPSNAM": "a"}]}
    if next_url:
        page["$links"] = {"$next": {"$url": next_url}}
    return page


def test_next_link_to_another_host_is_not_followed(x3, evil, caplog, monkeypatch):
    x3.always(200, _page(f"{evil.url}/api1/x3/erp/SEED/BPSUPPLIER?page=2"))
    exc = raises(X3ProtocolError, lambda: rest(x3).find_supplier_by_code("A"))
    assert str(exc) == (f"X3 sent a next-page link to {evil.url}, outside "
                        f"{x3.url}/api1/x3/erp/SEED: not followed")
    assert evil.seen == []
    assert_clean(exc, caplog, monkeypatch)


@pytest.mark.parametrize("path", [
    "/api1/x3/erp/OTHER/BPSUPPLIER?page=2",     # another folder
    "/api1/x3/erp/SEEDX/BPSUPPLIER",            # a prefix of the path, not the folder
    "/api1/x3/erp/SEED/../../../admin",         # dot segments
    "/api1/x3/erp/SEED/%2e%2e/%2E%2E/admin",    # encoded dot segments
    "/admin",
])
def test_next_link_outside_the_folder_is_not_followed(x3, caplog, monkeypatch, path):
    x3.answer(lambda h, seen: h.reply(200, _page(f"{x3.url}{path}")))
    exc = raises(X3ProtocolError, lambda: rest(x3).find_supplier_by_code("A"))
    assert str(exc) == (f"X3 sent a next-page link to {x3.url}, outside "
                        f"{x3.url}/api1/x3/erp/SEED: not followed")
    assert len(x3.seen) == 1


def test_next_link_with_userinfo_or_another_scheme_is_not_followed(x3, caplog, monkeypatch):
    host = x3.url.split("//", 1)[1]
    for link in (f"http://{USER}:{PASSWORD}@{host}/api1/x3/erp/SEED/BPSUPPLIER?p=2",
                 f"https://{host}/api1/x3/erp/SEED/BPSUPPLIER?p=2"):
        x3.always(200, _page(link))
        exc = raises(X3ProtocolError, lambda: rest(x3).find_supplier_by_code("A"))
        assert "outside" in str(exc) and "not followed" in str(exc)
        assert_clean(exc, caplog, monkeypatch)


def test_next_link_to_itself_is_a_loop(x3, caplog, monkeypatch):
    x3.answer(lambda h, seen: h.reply(200, _page(f"{x3.url}/api1/x3/erp/SEED/BPSUPPLIER?p=2")))
    exc = raises(X3ProtocolError, lambda: rest(x3).find_supplier_by_code("A"))
    assert str(exc) == "X3 sent a next-page link already followed (page 3): paging stopped"
    assert len(x3.seen) == 2


def test_relative_next_link_within_the_folder_is_followed(x3):
    def script(h, seen):
        last = "p=2" in seen.path
        h.reply(200, _page(None if last else "BPSUPPLIER?p=2"))
    x3.answer(script)
    assert rest(x3).find_supplier_by_code("A").code == "A"
    assert [s.path.split("?")[0] for s in x3.seen] == ["/api1/x3/erp/SEED/BPSUPPLIER"] * 2


def test_endless_distinct_next_links_are_capped(x3, caplog, monkeypatch):
    def script(h, seen):
        h.reply(200, _page(f"{x3.url}/api1/x3/erp/SEED/BPSUPPLIER?p={len(x3.seen)}"))
    x3.answer(script)
    exc = raises(X3ProtocolError, lambda: rest(x3, max_pages=5).find_supplier_by_code("A"))
    assert str(exc) == "X3 paging went past 5 pages: stopped"
    assert len(x3.seen) == 5


def _supplier_page(cursor: str | None, more: bool = True) -> dict:
    return {"data": {"x3MasterData": {"supplier": {"query": {
        "edges": [{"node": {"code": "A", "companyName1": "a"}}],
        "pageInfo": {"endCursor": cursor, "hasNextPage": more}}}}}}


def test_graphql_repeated_cursor_is_a_loop(x3, caplog, monkeypatch):
    x3.always(200, _supplier_page("c1"))
    exc = raises(X3ProtocolError, lambda: gql(x3).find_supplier_by_code("A"))
    assert str(exc) == "X3 sent a page cursor already followed (page 3): paging stopped"
    assert len(x3.seen) == 2
    assert_clean(exc, caplog, monkeypatch)


def test_graphql_endless_cursors_are_capped(x3, caplog, monkeypatch):
    x3.answer(lambda h, seen: h.reply(200, _supplier_page(f"c{len(x3.seen)}")))
    exc = raises(X3ProtocolError, lambda: gql(x3, max_pages=4).find_supplier_by_code("A"))
    assert str(exc) == "X3 paging went past 4 pages: stopped"


def test_graphql_more_pages_without_a_cursor_is_not_a_silent_truncation(x3):
    x3.always(200, _supplier_page(None))
    exc = raises(X3ProtocolError, lambda: gql(x3).find_supplier_by_code("A"))
    assert str(exc) == "X3 said more pages follow but sent no cursor: paging stopped"


# -- redirects --
def test_redirect_on_a_read_is_not_followed(x3, evil, caplog, monkeypatch):
    x3.always(302, b"", headers={"Location": f"{evil.url.replace('//', f'//{USER}:{PASSWORD}@')}"
                                              "/steal?x=1"})
    exc = raises(X3ProtocolError, lambda: rest(x3).find_supplier_by_code("A"))
    assert str(exc) == (f"X3 answered a redirect (HTTP 302 Found to {evil.url}): not followed,"
                        " check the X3 URL")
    assert evil.seen == []
    assert_clean(exc, caplog, monkeypatch)


# -- bounded answers --
def test_a_body_dripped_a_byte_at_a_time_ends_at_the_deadline(x3, caplog, monkeypatch):
    x3.answer(lambda h, seen: h.drip(json.dumps(_page(None)).encode() * 50, every=0.05))
    started = time.monotonic()
    exc = raises(X3Unavailable, lambda: rest(x3, deadline=1.0).find_supplier_by_code("A"))
    assert str(exc) == "X3 did not answer within the deadline (1 s)"
    assert time.monotonic() - started < 2.5
    assert_clean(exc, caplog, monkeypatch)


def test_one_deadline_keeper_per_process_however_many_calls(x3):
    """Every exchange is watched by one keeper thread (not a thread started per call), and a
    forked child (a Celery pool process) gets its own keeper that still ends a dripped answer."""
    import multiprocessing
    import threading

    x3.always(200, json.dumps(_page(None)).encode())
    c = rest(x3, deadline=5.0)
    for _ in range(20):
        assert c.find_supplier_by_code("A").code == "A"
    names = [t.name for t in threading.enumerate()]
    assert names.count("x3-deadlines") == 1 and "x3-deadline" not in names
    x3.answer(lambda h, seen: h.drip(json.dumps(_page(None)).encode() * 50, every=0.05))

    def child() -> None:
        started = time.monotonic()
        try:
            rest(x3, deadline=1.0).find_supplier_by_code("A")
        except X3Unavailable:
            os._exit(0 if time.monotonic() - started < 2.5 else 2)
        os._exit(1)

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(10)
    assert proc.exitcode == 0


def test_the_environments_proxy_is_used_and_no_proxy_honoured(x3, monkeypatch):
    """The environment is read once per origin, not per request: HTTP_PROXY still carries the
    calls, NO_PROXY still exempts a host, and a ~/.netrc login never replaces ours."""
    x3.always(200, json.dumps(_page(None)).encode())
    monkeypatch.setenv("HTTP_PROXY", x3.url)
    monkeypatch.setenv("NO_PROXY", "")
    client = RestClient("http://x3.invalid:8124", "SEED", USER, PASSWORD, timeout=2,
                        retry=ONE_TRY)
    for _ in range(2):
        assert client.find_supplier_by_code("A").code == "A"
    assert [s.path.split("?")[0] for s in x3.seen] == [
        "http://x3.invalid:8124/api1/x3/erp/SEED/BPSUPPLIER"] * 2  # absolute form: a proxy
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = rest(x3)
    assert direct.find_supplier_by_code("A").code == "A"
    assert x3.seen[-1].path.startswith("/api1/")


def test_a_netrc_login_never_replaces_the_bearer_token(x3, monkeypatch, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login intruder password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    x3.always(200, json.dumps({"data": {"x3FinanceData": {"account": {"query": {
        "edges": [], "pageInfo": {"hasNextPage": False}}}}}}).encode())
    assert gql(x3).account_exists("CONS", "6100") is False
    assert x3.seen[-1].headers["Authorization"] == f"Bearer {TOKEN}"


def test_headers_dripped_a_byte_at_a_time_end_at_the_deadline(x3, caplog, monkeypatch):
    x3.answer(lambda h, seen: h.drip_headers(every=0.05))
    started = time.monotonic()
    exc = raises(X3Unavailable, lambda: rest(x3, deadline=1.0).find_supplier_by_code("A"))
    assert str(exc) == "X3 did not answer within the deadline (1 s)"
    assert time.monotonic() - started < 2.5


def test_a_tls_handshake_dripped_a_byte_at_a_time_ends_at_the_deadline():
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)  # the ClientHello; then a TLS record header, a byte at a time
            for byte in b"\x16\x03\x03\x40\x00" + b"\x00" * 2000:
                if stop.is_set():
                    return
                try:
                    conn.send(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.05)

    threading.Thread(target=serve, daemon=True).start()
    port = listener.getsockname()[1]
    client = RestClient(f"https://127.0.0.1:{port}", "SEED", USER, PASSWORD, retry=ONE_TRY,
                        timeout=5, connect_timeout=5, deadline=1.0)
    started = time.monotonic()
    try:
        exc = raises(X3Unavailable, lambda: client.find_supplier_by_code("A"))
    finally:
        stop.set()
        listener.close()
    assert str(exc) == "X3 did not answer within the deadline (1 s)"
    assert time.monotonic() - started < 2.5


def test_a_dripped_create_answer_is_outcome_unknown_at_the_deadline(x3, caplog, monkeypatch):
    x3.answer(lambda h, seen: h.drip(b'{"NUM": "X"}' * 100, every=0.05))
    started = time.monotonic()
    exc = raises(X3OutcomeUnknown, lambda: rest(x3, deadline=1.0).create_invoice(INVOICE))
    assert str(exc) == ("BPSINVOICE create sent, no complete answer within the deadline (1 s):"
                        " the record may exist")
    assert time.monotonic() - started < 2.5


def test_a_dripped_graphql_mutation_is_outcome_unknown(x3):
    x3.answer(lambda h, seen: h.drip_headers(every=0.05))
    exc = raises(X3OutcomeUnknown, lambda: gql(x3, deadline=1.0).create_invoice(INVOICE))
    assert str(exc) == ("supplierBpInvoice create sent, no complete answer within the deadline"
                        " (1 s):"
                        " the record may exist")


@pytest.mark.parametrize("chunked", [False, True])
def test_a_huge_body_is_not_read_past_the_cap(x3, caplog, monkeypatch, chunked):
    x3.answer(lambda h, seen: h.flood(64, chunked=chunked))
    started = time.monotonic()
    exc = raises(X3Unavailable, lambda: rest(x3, max_response_mb=1).find_supplier_by_code("A"))
    assert str(exc) == "X3 answer larger than 1 MB: not read"
    assert time.monotonic() - started < 5


def test_a_compressed_bomb_is_capped_by_what_it_inflates_to(x3):
    import gzip
    bomb = gzip.compress(b"[" + b" " * (64 * 1024 * 1024) + b"]", compresslevel=9)
    assert len(bomb) < 1024 * 1024
    x3.always(200, bomb, headers={"Content-Encoding": "gzip"})
    exc = raises(X3Unavailable, lambda: rest(x3, max_response_mb=1).find_supplier_by_code("A"))
    assert str(exc) == "X3 answer larger than 1 MB: not read"


RAW = {
    "300 headers": b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(300))
                   + b"Content-Length: 2\r\n\r\n{}",
    "a 100 kB header": b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 100_000
                       + b"\r\nContent-Length: 2\r\n\r\n{}",
    "a status line echoing the login": b"HTTP/1.1 abc Basic %s\r\n\r\n" % LOGIN.encode(),
    "no HTTP at all": b"\x00\x01garbage\r\n\r\n",
    "a broken chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n",
}


@pytest.mark.parametrize("raw", sorted(RAW))
def test_answers_that_are_not_http_are_typed(x3, caplog, monkeypatch, raw):
    x3.answer(lambda h, seen: h.wfile.write(RAW[raw]))
    exc = raises(X3Unavailable, lambda: rest(x3).find_supplier_by_code("A"))
    assert str(exc).startswith("X3 unreachable: ")
    exc = raises(X3OutcomeUnknown, lambda: rest(x3).create_supplier(SUPPLIER))
    assert str(exc) == "BPSUPPLIER create sent, connection lost before the answer"
    assert_clean(exc, caplog, monkeypatch)


def test_a_huge_create_answer_is_outcome_unknown(x3):
    x3.answer(lambda h, seen: h.flood(8, chunked=True))
    exc = raises(X3OutcomeUnknown, lambda: rest(x3, max_response_mb=1).create_invoice(INVOICE))
    assert str(exc) == ("BPSINVOICE create sent, answer larger than 1 MB: the record may "
                        "exist")


# -- token endpoints --
CLIENT_SECRET = "cs-hostile-5ecret-9"  # noqa: S105


def refresh_source(server, **kw) -> RefreshTokens:
    return RefreshTokens(MemoryTokenStore("rt-hostile-0001"), f"{server.url}/token", "cid",
                         CLIENT_SECRET, timeout=2, **kw)


def test_token_refresh_verifies_tls_with_the_connection_ca_bundle(tmp_path, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    cert, key = self_signed(tmp_path)
    with hostile_server(tls=(cert, key)) as tls:
        tls.always(200, {"access_token": "at-tls-0001", "refresh_token": "rt-tls-0002",
                         "expires_in": 300})
        assert refresh_source(tls, verify=str(cert)).token() == "at-tls-0001"
        exc = raises(X3Unavailable, lambda: refresh_source(tls).token())  # the system's CAs
        assert str(exc) == "X3 unreachable: SSLError"
        assert len(tls.seen) == 1


def test_x3_calls_verify_tls_with_the_ca_bundle_even_when_the_environment_names_another(
        tmp_path, monkeypatch):
    # requests lets REQUESTS_CA_BUNDLE override a session's verify (psf/requests#3829).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    cert, key = self_signed(tmp_path)
    with hostile_server(tls=(cert, key)) as tls:
        tls.always(200, _page(None))
        assert rest(tls, verify=str(cert)).find_supplier_by_code("A").code == "A"
        tls.always(200, {"data": {"x3FinanceData": {"account": {"query": {"edges": []}}}}})
        assert gql(tls, verify=str(cert)).account_exists("CONS", "6100") is False


def test_the_onboarding_code_exchange_verifies_tls_with_the_ca_bundle(tmp_path, monkeypatch):
    from pipeline.x3.authorize import exchange_code

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    cert, key = self_signed(tmp_path)
    with hostile_server(tls=(cert, key)) as tls:
        tls.always(200, {"access_token": "at-code-0001", "refresh_token": "rt-code-0001",
                         "expires_in": 300})
        grant = exchange_code(f"{tls.url}/token", "cid", CLIENT_SECRET, "code-0001",
                              "http://127.0.0.1:9/cb", verify=str(cert))
        assert grant.refresh_token == "rt-code-0001"
        monkeypatch.setattr("time.sleep", lambda s: None)
        exc = raises(X3Unavailable, lambda: exchange_code(
            f"{tls.url}/token", "cid", CLIENT_SECRET, "code-0002", "http://127.0.0.1:9/cb"))
        assert str(exc) == "X3 unreachable: SSLError"  # the system's CAs: nothing was sent
        assert len(tls.seen) == 1


def test_token_source_of_a_connection_uses_its_ca_bundle():
    from pipeline import connections
    from pipeline.x3.connect import token_source

    conn = connections.Connection(
        "x3", "x3_graphql", {"url": "https://x3.example", "folder": "SEED", "auth": "oauth",
                             "client_id": "c", "token_url": "https://x3.example/token",
                             "ca_bundle": "/etc/mlc/x3-ca.pem"},
        {"client_secret": "s3cret-s", "refresh_token": "rt-0001"})
    assert token_source(conn)._http.session.verify == "/etc/mlc/x3-ca.pem"


def test_a_dripping_token_endpoint_ends_at_the_deadline(x3, caplog, monkeypatch):
    x3.answer(lambda h, seen: h.drip(b'{"access_token": "at-drip-0001"}' * 20, every=0.05))
    started = time.monotonic()
    exc = raises(X3Unavailable, lambda: refresh_source(x3, deadline=1.0).token())
    assert str(exc) == ("token endpoint gave no usable answer to the refresh (token refresh "
                        "sent, no complete answer within the deadline (1 s))")
    assert time.monotonic() - started < 2.5
    assert CLIENT_SECRET not in str(exc)


def test_a_token_endpoint_answering_html_is_transient(x3):
    x3.always(200, "<html>portal</html>", content_type="text/html")
    exc = raises(X3Unavailable, lambda: refresh_source(x3).token())
    assert str(exc) == "token endpoint answered HTTP 200 OK with an HTML page, not a token"


def test_a_token_endpoint_echoing_the_client_secret_is_masked(x3, caplog, monkeypatch):
    def script(h, seen):
        body = seen.json()
        h.reply(401, {"error": f"invalid_client {body['client_secret']}",
                      "error_description": f"secret {body['client_secret']} refused"})
    x3.answer(script)
    exc = raises(X3AuthError, lambda: refresh_source(x3).token())
    assert str(exc) == ("token endpoint refused the client (HTTP 401 Unauthorized): check the "
                        "client id and secret of the x3 connection")
    assert CLIENT_SECRET not in caplog.text


def test_a_token_lifetime_that_is_not_a_number_is_the_contracts_five_minutes(x3):
    x3.always(200, {"access_token": "at-odd-0001", "expires_in": "soon"})
    assert refresh_source(x3).token() == "at-odd-0001"


def test_a_token_url_with_userinfo_is_refused():
    with pytest.raises(ValueError) as err:
        RefreshTokens(MemoryTokenStore("rt"), f"https://cid:{CLIENT_SECRET}@x3.example/token",
                      "cid", CLIENT_SECRET)
    assert CLIENT_SECRET not in str(err.value)
    assert str(err.value).startswith("the token URL must not hold a user name or password")


# -- URLs holding credentials --
@pytest.mark.parametrize("url", [f"https://{USER}:{PASSWORD}@x3.example",
                                 f"https://{PASSWORD}@x3.example:8443/x3"])
def test_an_x3_url_with_userinfo_is_refused_without_echoing_it(url):
    for build in (lambda: RestClient(url, "SEED", USER, "pw"),
                  lambda: GraphQLClient(url, "SEED", _Tokens())):
        with pytest.raises(ValueError) as err:
            build()
        assert "\n" not in str(err.value) and PASSWORD not in str(err.value)
        assert str(err.value).startswith("the X3 URL must not hold a user name or password")


# -- the sinks themselves, fed raw secrets --
def test_audit_masks_secrets_in_any_detail_value():
    logs.register_secret(PASSWORD)
    cur = _Cursor()
    audit.record(cur, "invoice_post", "error", invoice_id=1,
                 error=f"boom {PASSWORD}", nested={"list": [f"Basic {LOGIN}", f"Bearer {TOKEN}"]},
                 **{f"key {PASSWORD}": 1})
    detail = json.loads(cur.stored[-1])
    assert detail["error"] == "boom ***"
    assert detail["nested"]["list"] == ["Basic ***", "Bearer ***"]
    for secret in SECRETS:
        assert secret not in cur.stored[-1]


def test_celery_retry_gets_a_masked_exception(monkeypatch, caplog):
    logs.register_secret(PASSWORD)
    retried = _retry_exception(RuntimeError(f"proxy said Basic {LOGIN} / {PASSWORD}"),
                               monkeypatch)
    assert str(retried) == "RuntimeError: proxy said Basic *** / ***"
    assert PASSWORD not in caplog.text and LOGIN not in caplog.text


def test_log_records_are_masked_for_every_handler(caplog):
    logs.register_secret(PASSWORD)
    caplog.set_level(logging.INFO)
    logging.getLogger("pipeline.test").warning("sent %s and Authorization: Basic %s",
                                               PASSWORD, LOGIN)
    assert caplog.records[-1].getMessage() == "sent *** and Authorization: Basic ***"


def test_posting_fail_masks_the_reason_it_stores(monkeypatch):
    from contextlib import contextmanager

    from pipeline import posting

    cur = _Cursor()

    @contextmanager
    def transaction():
        yield cur

    logs.register_secret(PASSWORD)
    monkeypatch.setattr("pipeline.posting.db.transaction", transaction)
    posting.fail(audit.CLI, 7, f"RuntimeError: proxy said {PASSWORD} / Basic {LOGIN}")
    assert "RuntimeError: proxy said *** / Basic ***" in cur.stored  # invoices.last_error
    assert all(PASSWORD not in text and LOGIN not in text for text in cur.stored)


def test_a_dead_deadline_keeper_is_replaced_and_an_error_in_it_does_not_stop_it(monkeypatch):
    """Found by review: a keeper thread that had died would have fired no deadline again."""
    import socket
    import threading

    from pipeline.x3 import watchdog

    def armed(keeper):
        ours, theirs = socket.socketpair()
        dog = watchdog.Watchdog(0.2)
        dog.deadline = time.monotonic() + 0.2
        dog.attach(type("Conn", (), {"sock": ours})())
        keeper.arm(dog)
        theirs.settimeout(3)
        assert theirs.recv(1) == b""  # shut down: the peer sees the end
        keeper.disarm(dog)
        assert dog.fired
        ours.close()
        theirs.close()

    keeper = watchdog._Keeper()
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    keeper._thread = dead
    armed(keeper)
    assert keeper._thread is not dead and keeper._thread.is_alive()

    real, failed = keeper._turn, []

    def turn_that_fails_once():
        if not failed:
            failed.append(True)
            raise RuntimeError("a bug in the keeper")
        real()

    monkeypatch.setattr(keeper, "_turn", turn_that_fails_once)
    keeper._cond.acquire()
    keeper._cond.notify()
    keeper._cond.release()
    armed(keeper)
    assert failed
