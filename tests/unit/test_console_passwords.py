"""scrypt password hashes: salted, verified in constant time, refused when malformed."""

from console.passwords import WeakPassword, check_strength, hash_password, verify_password


def test_hash_is_salted_and_verifies():
    a, b = hash_password("a long password", n=2**10), hash_password("a long password", n=2**10)
    assert a != b and a.startswith("scrypt$1024$8$1$")
    assert verify_password("a long password", a)
    assert not verify_password("a long passwore", a)


def test_malformed_hashes_never_verify():
    for stored in ("", "plain", "md5$x$y$z$a$b", "scrypt$x$8$1$AA==$AA==", "scrypt$1024$8$1$!$!"):
        assert not verify_password("anything", stored)


def test_short_passwords_are_refused():
    try:
        check_strength("short")
    except WeakPassword as exc:
        assert "10 characters" in str(exc)
    else:
        raise AssertionError("a short password was accepted")


def test_mlc_does_not_import_flask_or_hash_to_build_its_parser():
    import subprocess
    import sys

    code = ("import sys; from ops.cli import build_parser; build_parser();"
            " print(sorted(m for m in sys.modules if m.split('.')[0] in"
            " ('flask', 'werkzeug', 'console')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['console', 'console.cli']"
    from console.cli import ROLES
    from console.users import ROLES as USER_ROLES

    assert ROLES == USER_ROLES
