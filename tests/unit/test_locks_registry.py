"""The advisory-lock registry: one place, distinct keys, and the first release's values (old and
new workers must still exclude each other during a rolling deploy)."""

import pytest
from cryptography.fernet import Fernet

from pipeline import locks
from pipeline.config import ConfigError, load_settings


def test_keys_keep_the_first_release_values():
    assert locks.migrate().args == (0x4D4C43_01,)
    assert locks.poll().args == (0x4D4C43_02,)
    assert locks.vendor("ACME01") == locks.Key("vendor ACME01", "%s, hashtext(%s)",
                                               (0x4D4C_0003, "ACME01"))
    assert locks.invoice_post(7) == locks.Key("post of invoice 7", "%s, %s", (0x4D4C_0004, 7))


def test_namespaces_are_distinct_and_pg_locks_rows_are_named():
    assert len(set(locks.NAMES.values())) == len(locks.NAMES) == 4
    assert locks.describe(0, 0x4D4C43_02, 1) == "poll (0x4d4c4302)"
    assert locks.describe(0x4D4C_0004, 12, 2) == "post (0x4d4c0004, 12)"
    assert locks.describe(1, 2, 2).startswith("unknown")


def test_timeout_settings_defaults_and_bounds():
    base = {"DATABASE_URL": "postgresql://h/db", "MLC_SECRET_KEYS": Fernet.generate_key().decode()}
    s = load_settings(base)
    assert (s.pg_connect_timeout, s.pg_statement_timeout, s.pg_lock_timeout,
            s.pg_idle_in_transaction_timeout) == (10, 300.0, 120.0, 900.0)
    assert (s.redis_socket_timeout, s.redis_connect_timeout) == (5.0, 3.0)
    assert load_settings({**base, "MLC_PG_STATEMENT_TIMEOUT": "0"}).pg_statement_timeout == 0
    with pytest.raises(ConfigError, match="MLC_PG_IDLE_IN_TRANSACTION_TIMEOUT: must be above"):
        load_settings({**base, "MLC_X3_TIMEOUT": "60",
                       "MLC_PG_IDLE_IN_TRANSACTION_TIMEOUT": "30"})
    with pytest.raises(ConfigError, match="MLC_REDIS_SOCKET_TIMEOUT"):
        load_settings({**base, "MLC_REDIS_SOCKET_TIMEOUT": "0"})
