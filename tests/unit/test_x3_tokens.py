"""Token sources: connected-app JWTs and the OAuth2 refresh flow, against `responses`."""

import base64
import hashlib
import hmac
import json
import threading

import pytest
import requests
import responses

from pipeline.logs import mask
from pipeline.x3.errors import X3AuthError, X3Unavailable
from pipeline.x3.tokens import ConnectedAppTokens, MemoryTokenStore, RefreshTokens, sign_hs256

TOKEN_URL = "https://id.example/oauth/token"


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def _segment(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_hs256_signature_verifies_independently():
    token = sign_hs256({"iss": "app", "n": 1}, "s3cret")
    header, payload, signature = token.split(".")
    assert _segment(header) == {"alg": "HS256", "typ": "JWT"}
    assert _segment(payload) == {"iss": "app", "n": 1}
    expected = hmac.new(b"s3cret", f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)) == expected


def test_connected_app_claims_iat_in_the_past_exp_iat_plus_300():
    clock = Clock(1_700_000_000.7)
    source = ConnectedAppTokens("app-id", "app-secret", "ADMIN", "x3-aud", clock=clock)
    claims = _segment(source.token().split(".")[1])
    assert claims["iss"] == "app-id" and claims["sub"] == "ADMIN" and claims["aud"] == "x3-aud"
    assert 0 < clock.now - claims["iat"] <= 10
    assert claims["exp"] == claims["iat"] + 300


def test_connected_app_reuses_then_resigns_before_expiry_and_on_401():
    clock = Clock()
    source = ConnectedAppTokens("app", "app-secret", "ADMIN", "aud", clock=clock)
    first = source.token()
    clock.now += 100
    assert source.token() == first
    clock.now += 180  # within the margin of exp
    second = source.token()
    assert second != first
    clock.now += 1
    assert source.renew(second) != second  # a 401 makes it sign afresh at once
    assert "app-secret" not in repr(source)


def _grant(access, refresh, expires_in=300):
    return {"json": {"access_token": access, "refresh_token": refresh, "expires_in": expires_in}}


def _source(store, clock, **kw):
    return RefreshTokens(store, TOKEN_URL, "cid", "client-secret-1", clock=clock, **kw)


@responses.activate
def test_refresh_then_reuse_until_the_margin_then_refresh_again():
    clock = Clock()
    store = MemoryTokenStore("rt-0", clock=clock)
    responses.post(TOKEN_URL, **_grant("at-1", "rt-1"))
    responses.post(TOKEN_URL, **_grant("at-2", "rt-2"))
    source = _source(store, clock)
    assert source.token() == "at-1"
    sent = json.loads(responses.calls[0].request.body)
    assert sent == {"grant_type": "refresh_token", "refresh_token": "rt-0",
                    "client_id": "cid", "client_secret": "client-secret-1"}
    clock.now += 200
    assert source.token() == "at-1" and len(responses.calls) == 1
    clock.now += 50  # 50 s left, margin 60 s
    assert source.token() == "at-2"
    assert json.loads(responses.calls[1].request.body)["refresh_token"] == "rt-1"
    assert store.refresh_token == "rt-2"


@responses.activate
def test_short_lifetimes_get_a_proportional_margin():
    clock = Clock()
    store = MemoryTokenStore("rt-0", clock=clock)
    responses.post(TOKEN_URL, **_grant("at-1", "rt-1", expires_in=2))
    responses.post(TOKEN_URL, **_grant("at-2", "rt-2", expires_in=2))
    source = _source(store, clock)
    assert source.token() == "at-1"
    clock.now += 1.5
    assert source.token() == "at-1"  # margin is 0.4 s, not 60 s
    clock.now += 0.2
    assert source.token() == "at-2"


@responses.activate
def test_rotated_refresh_token_is_stored_before_the_access_token_is_used():
    clock = Clock()
    store = MemoryTokenStore("rt-0", clock=clock)
    responses.post(TOKEN_URL, **_grant("at-1", "rt-1"))
    assert _source(store, clock).token() == "at-1"
    assert store.saves == [("at-1", "rt-1")]


@responses.activate
def test_another_process_token_in_the_store_is_used_without_refreshing():
    clock = Clock()
    store = MemoryTokenStore("rt-0", clock=clock)
    with store.locked() as locked:
        locked.save("at-shared", 300, "rt-0")
    assert _source(store, clock).token() == "at-shared"
    assert len(responses.calls) == 0


@responses.activate
def test_renew_after_401_refreshes_even_when_the_token_looks_valid():
    clock = Clock()
    store = MemoryTokenStore("rt-0", clock=clock)
    responses.post(TOKEN_URL, **_grant("at-1", "rt-1"))
    responses.post(TOKEN_URL, **_grant("at-2", "rt-2"))
    source = _source(store, clock)
    assert source.token() == "at-1"
    assert source.renew("at-1") == "at-2"


@responses.activate
def test_renew_uses_a_token_someone_else_already_refreshed():
    clock = Clock()
    store = MemoryTokenStore("rt-0", clock=clock)
    responses.post(TOKEN_URL, **_grant("at-1", "rt-1"))
    a, b = _source(store, clock), _source(store, clock)
    assert a.token() == "at-1"
    responses.post(TOKEN_URL, **_grant("at-2", "rt-2"))
    assert a.renew("at-1") == "at-2"
    assert b.renew("at-1") == "at-2"  # b also saw at-1 refused: no second refresh
    assert len(responses.calls) == 2


@responses.activate
def test_refused_refresh_token_is_a_reauthorise_error_and_not_retried():
    clock = Clock()
    store = MemoryTokenStore("rt-dead", clock=clock)
    responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    source = _source(store, clock)
    for _ in range(3):
        with pytest.raises(X3AuthError, match="re-authorise"):
            source.token()
    assert len(responses.calls) == 1  # remembered as refused: no loop against the endpoint
    store.refresh_token = "rt-new"  # a person re-authorised
    responses.replace(responses.POST, TOKEN_URL, **_grant("at-1", "rt-1"))
    assert source.token() == "at-1"


@responses.activate
def test_wrong_client_secret_is_an_auth_error_that_keeps_the_refresh_token():
    clock = Clock()
    store = MemoryTokenStore("rt-0", clock=clock)
    responses.post(TOKEN_URL, status=401, json={"error": "invalid_client"})
    with pytest.raises(X3AuthError, match="client id"):
        _source(store, clock).token()
    assert store.refused == set() and store.refresh_token == "rt-0"


@pytest.mark.parametrize("status", [500, 503, 429])
@responses.activate
def test_token_endpoint_overload_is_transient(status):
    clock = Clock()
    responses.post(TOKEN_URL, status=status, headers={"Retry-After": "3"}, json={})
    with pytest.raises(X3Unavailable) as err:
        _source(MemoryTokenStore("rt-0", clock=clock), clock).token()
    assert err.value.retry_after == 3.0


@responses.activate
def test_token_endpoint_dropping_the_answer_is_transient():
    clock = Clock()
    responses.post(TOKEN_URL, body=requests.ConnectionError("reset"))
    store = MemoryTokenStore("rt-0", clock=clock)
    with pytest.raises(X3Unavailable):
        _source(store, clock).token()
    assert store.refresh_token == "rt-0"


@responses.activate
def test_threads_of_one_process_refresh_once():
    clock = Clock()
    store = MemoryTokenStore("rt-0", clock=clock)
    responses.post(TOKEN_URL, **_grant("at-1", "rt-1"))
    source = _source(store, clock)
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(source.token())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == ["at-1"] * 8 and len(responses.calls) == 1


@responses.activate
def test_tokens_never_reach_logs_or_reprs(caplog):
    clock = Clock()
    store = MemoryTokenStore("rt-0", clock=clock)
    responses.post(TOKEN_URL, **_grant("at-secret-value", "rt-secret-value"))
    source = _source(store, clock)
    source.token()
    assert "secret-value" not in mask("got at-secret-value and rt-secret-value")
    assert "client-secret-1" not in repr(source) and "rt-" not in repr(source)


@responses.activate
def test_dead_credentials_leave_the_log_mask_list_so_it_stays_short():
    from pipeline.secrets import registered

    clock = Clock()
    store = MemoryTokenStore("rt-0", clock=clock)
    for n in range(1, 6):
        responses.post(TOKEN_URL, **_grant(f"at-mask-{n}", f"rt-mask-{n}", expires_in=10))
    source = _source(store, clock)
    for _ in range(5):
        source.token()
        clock.now += 11  # expired: the next call refreshes
    masked = {s for s in registered() if "-mask-" in s}
    assert "at-mask-5" in masked and "rt-mask-5" in masked  # live ones stay masked
    assert len([s for s in masked if s.startswith("at-")]) <= 2
    assert not any(s in masked for s in ("rt-mask-1", "rt-mask-2", "rt-mask-3"))
