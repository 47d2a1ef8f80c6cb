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
