from cryptography.fernet import Fernet

from pipeline.secrets import Secret, Vault, redact


def test_roundtrip_and_rotation():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = Vault([old]).encrypt({"password": "s3cret"})
    assert b"s3cret" not in token
    both = Vault([new, old])
    assert both.decrypt(token) == {"password": "s3cret"}
    rotated = both.rotate(token)
    assert Vault([new]).decrypt(rotated) == {"password": "s3cret"}


def test_redact_masks_secret_keys_at_any_depth():
    data = {"user": "a", "password": "p", "nested": [{"access_token": "t", "ok": 1}],
            "Authorization": "Basic xyz"}
    assert redact(data) == {"user": "a", "password": "***",
                            "nested": [{"access_token": "***", "ok": 1}],
                            "Authorization": "***"}


def test_secret_repr():
    assert "pw" not in repr(Secret("pw"))
    assert "pw" not in repr(Vault([Fernet.generate_key().decode()]))


def test_the_fast_path_masks_exactly_what_every_pattern_would():
    """mask() skips a credential pattern whose leading word is absent (ASCII text): on a corpus
    of mixed fragments it must give what running every pattern gives."""
    import random

    from pipeline.secrets import _credentials, mask

    fragments = ["Basic ", "BASIC\t", "bAsIc ", "dXNlcjpwYXNzd29yZA==", "Bearer ", "bearer\t",
                 "eyJhbGciOiJIUzI1NiJ9.abc.def", "Authorization: ", "PROXY-AUTHORIZATION=",
                 "Cookie: ", "x-api-key=", "https://", "user:pw@", "host/x?", "&password=",
                 "?token=", "code=", '"client_secret": "', 'abc"', " ", "=", '"', "@", ";",
                 "plain words", "Basic settings", "token expired", "ftp://h", "é", "ſ"]
    rng = random.Random(16)
    for _ in range(3000):
        text = "".join(rng.choice(fragments) for _ in range(rng.randint(1, 8)))
        assert mask(text) == _credentials(text, None), text
