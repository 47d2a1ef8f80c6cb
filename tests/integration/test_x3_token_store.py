"""The Postgres token store: what one process refreshed, the others use; a refused refresh token
is remembered for all; a stored access token survives only while its key does."""

import pytest
import requests
from cryptography.fernet import Fernet

from pipeline import connections, db
from pipeline.config import settings
from pipeline.x3 import token_store
from pipeline.x3.errors import X3AuthError
from pipeline.x3.token_store import PgTokenStore
from pipeline.x3.tokens import RefreshTokens

pytestmark = pytest.mark.integration


def save(url, refresh_token="initial-rt"):
    with db.transaction() as cur:
        connections.save(cur, "x3", "x3_graphql", {
            "url": url, "folder": "SEED", "auth": "oauth", "client_id": "demo",
            "token_url": f"{url}/oauth/token"},
            {"client_secret": "demo-secret", "refresh_token": refresh_token})
        token_store.forget(cur, "x3")


def source(url):
    return RefreshTokens(PgTokenStore("x3"), f"{url}/oauth/token", "demo", "demo-secret")


def refreshes(url):
    return requests.get(f"{url}/_sim/state", timeout=5).json()["stats"]["token_refreshes"]


def no_post(*args, **kwargs):
    raise AssertionError("must not ask the token endpoint")


def test_a_token_refreshed_by_one_process_is_used_by_the_others(db_env, x3sim):
    save(x3sim)
    first = source(x3sim).token()
    other = source(x3sim)  # another process: empty cache, same database
    other._post = no_post
    assert other.token() == first
    assert refreshes(x3sim) == 1 and PgTokenStore("x3").refreshes() == 1


def test_renewal_after_401_by_two_processes_refreshes_once(db_env, x3sim):
    save(x3sim)
    a, b = source(x3sim), source(x3sim)
    refused = a.token()
    assert b.token() == refused
    renewed = a.renew(refused)
    b._post = no_post
    assert b.renew(refused) == renewed != refused
    assert refreshes(x3sim) == 2


def test_a_refused_refresh_token_fails_every_process_fast(db_env, x3sim):
    save(x3sim, refresh_token="revoked-rt")
    with pytest.raises(X3AuthError, match="re-authorise"):
        source(x3sim).token()
    other = source(x3sim)
    other._post = no_post
    with pytest.raises(X3AuthError, match="re-authorise"):
        other.token()
    new = requests.post(f"{x3sim}/_sim/authorize", timeout=5).json()["refresh_token"]
    save(x3sim, refresh_token=new)  # a person re-authorised
    assert source(x3sim).token()


def test_an_access_token_sealed_with_a_removed_key_is_refreshed(db_env, x3sim, monkeypatch):
    save(x3sim)
    old = source(x3sim).token()
    new_key = Fernet.generate_key().decode()
    monkeypatch.setenv("MLC_SECRET_KEYS", f"{new_key},{db_env['MLC_SECRET_KEYS']}")
    settings.cache_clear()
    with db.transaction() as cur:
        connections.rotate_all(cur)  # the refresh token moves to the new key, the access token not
    monkeypatch.setenv("MLC_SECRET_KEYS", new_key)
    settings.cache_clear()
    assert PgTokenStore("x3").current() is None
    assert source(x3sim).token() != old
