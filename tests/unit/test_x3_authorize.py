"""The onboarding's pure parts: the authorisation URL, the loopback address, the regional
endpoint."""

from urllib.parse import parse_qs, urlsplit

import pytest

from pipeline.x3.authorize import (
    AuthorizeError,
    Callback,
    Grant,
    Onboarding,
    authorization_url,
    loopback_address,
    new_state,
    regional,
)

ONB = Onboarding(url="https://api.us.example.com/v1", folder="SEED", client_id="cid",
                 token_url="https://api.us.example.com/v1/token",
                 redirect_uri="http://127.0.0.1:8765/callback",
                 authorize_url="https://api.us.example.com/v1/token/authorise?lang=en")


def test_authorization_url_carries_what_sage_asks_for():
    url = authorization_url(ONB, "st4te")
    params = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
    assert params == {"lang": "en", "client_id": "cid", "scope": "api.graphQL",
                      "customer": "https://api.us.example.com/v1",
                      "redirect_uri": "http://127.0.0.1:8765/callback", "state": "st4te"}


def test_states_are_random():
    assert len({new_state() for _ in range(20)}) == 20


@pytest.mark.parametrize(("uri", "expected"), [
    ("http://127.0.0.1:8765/callback", ("127.0.0.1", 8765, "/callback")),
    ("http://localhost:9000/cb", ("127.0.0.1", 9000, "/cb")),
    ("http://[::1]:9000/", ("::1", 9000, "/")),
])
def test_loopback_address(uri, expected):
    assert loopback_address(uri) == expected


@pytest.mark.parametrize("uri", ["https://127.0.0.1:8765/cb", "http://example.com:80/cb",
                                 "http://127.0.0.1/cb", "http://10.0.0.5:8765/cb"])
def test_listener_needs_a_loopback_http_uri_with_a_port(uri):
    with pytest.raises(AuthorizeError, match="--code"):
        loopback_address(uri)


def test_regional_endpoint_moves_the_base_and_a_token_url_under_it():
    assert regional(ONB.url, ONB.token_url, None) == (ONB.url, ONB.token_url)
    assert regional(ONB.url, ONB.token_url, "https://api.eu.example.com/v1/") == (
        "https://api.eu.example.com/v1", "https://api.eu.example.com/v1/token")
    # A token URL on another host (an identity provider) stays where it is.
    assert regional(ONB.url, "https://id.example.com/token", "https://eu.example.com") == (
        "https://eu.example.com", "https://id.example.com/token")


@pytest.mark.parametrize("endpoint", ["http://eu.example.com", "ftp://eu.example.com", "eu"])
def test_regional_endpoint_must_be_https(endpoint):
    with pytest.raises(AuthorizeError, match="not an https URL"):
        regional(ONB.url, ONB.token_url, endpoint)


def test_codes_and_tokens_stay_out_of_repr():
    assert "c0de" not in repr(Callback("c0de", "s", None))
    text = repr(Grant("acc3ss", "refr3sh", 300))
    assert "acc3ss" not in text and "refr3sh" not in text
