import pytest
from cryptography.fernet import Fernet

from pipeline.config import ConfigError, load_settings

KEY = Fernet.generate_key().decode()


def test_every_problem_is_listed_in_one_message():
    with pytest.raises(ConfigError) as err:
        load_settings({"MLC_POLL_INTERVAL": "soon", "MLC_SECRET_KEYS": "not-a-key",
                       "CELERY_BROKER_URL": "amqp://x", "MLC_AFTER_DOWNLOAD": "shred"})
    text = str(err.value)
    assert text.startswith("invalid configuration:")
    for name in ("DATABASE_URL", "MLC_POLL_INTERVAL", "MLC_SECRET_KEYS", "CELERY_BROKER_URL",
                 "MLC_AFTER_DOWNLOAD"):
        assert name in text
    assert "not-a-key" not in text  # a secret, even a malformed one, is never echoed


def test_defaults_and_lists():
    s = load_settings({"DATABASE_URL": "postgresql://u:pw@h/db", "MLC_SECRET_KEYS": f" {KEY} ,"})
    assert s.poll_interval == 900
    assert s.secret_keys == (KEY,)
    assert s.invoice_patterns == ("invoices_*.csv", "invoices_*.xml")
    assert s.visibility_timeout > s.task_time_limit
    assert s.x3_max_concurrency == 4
    assert (s.x3_graphql_invoice_package, s.x3_graphql_invoice_node) == (
        "x3Accounting", "supplierBpInvoice")


def test_visibility_timeout_must_outlive_task_and_backoff():
    with pytest.raises(ConfigError) as err:
        load_settings({"DATABASE_URL": "postgresql://h/db", "MLC_SECRET_KEYS": KEY,
                       "MLC_VISIBILITY_TIMEOUT": "600", "MLC_TASK_TIME_LIMIT": "900",
                       "MLC_RETRY_BACKOFF_MAX": "700"})
    assert "MLC_TASK_TIME_LIMIT: must be lower than MLC_VISIBILITY_TIMEOUT" in str(err.value)
    assert "MLC_RETRY_BACKOFF_MAX" in str(err.value)


def test_repr_hides_keys_and_passwords():
    s = load_settings({"DATABASE_URL": "postgresql://u:hunter2@h/db?password=pw2",
                       "MLC_SECRET_KEYS": KEY,
                       "CELERY_RESULT_BACKEND": "redis://:backendpw@h:6379/1"})
    assert KEY not in repr(s)
    for secret in ("hunter2", "pw2", "backendpw"):
        assert secret not in repr(s)


def test_cli_reports_config_error(capsys, monkeypatch):
    from ops import cli
    from pipeline.config import settings

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("MLC_SECRET_KEYS", raising=False)
    settings.cache_clear()
    try:
        assert cli.main(["status"]) == 2
    finally:
        settings.cache_clear()
    err = capsys.readouterr().err
    assert "invalid configuration" in err and "DATABASE_URL" in err and "MLC_SECRET_KEYS" in err


def test_export_parsing_bounds_default_and_the_deadline_stays_below_the_task_limit():
    base = {"DATABASE_URL": "postgresql://h/db", "MLC_SECRET_KEYS": KEY}
    s = load_settings(base)
    assert (s.max_line_kb, s.max_field_kb, s.max_columns) == (64, 16, 256)
    assert (s.date_years_back, s.date_years_ahead, s.allow_zero_invoices) == (10, 1, False)
    assert s.parse_deadline == 480.0  # 80% of MLC_TASK_TIME_LIMIT
    assert load_settings({**base, "MLC_TASK_TIME_LIMIT": "100"}).parse_deadline == 80.0
    with pytest.raises(ConfigError) as err:
        load_settings({**base, "MLC_PARSE_DEADLINE": "600"})
    assert "MLC_PARSE_DEADLINE: must be lower than MLC_TASK_TIME_LIMIT" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_settings({**base, "MLC_MAX_LINE_KB": "0", "MLC_ALLOW_ZERO_INVOICES": "maybe"})
    assert "MLC_MAX_LINE_KB" in str(err.value) and "MLC_ALLOW_ZERO_INVOICES" in str(err.value)


def test_invoices_per_task_defaults_to_8_within_1_to_100():
    base = {"DATABASE_URL": "postgresql://h/db", "MLC_SECRET_KEYS": KEY}
    assert load_settings(base).invoices_per_task == 8
    assert load_settings({**base, "MLC_INVOICES_PER_TASK": "1"}).invoices_per_task == 1
    assert load_settings({**base, "MLC_INVOICES_PER_TASK": "100"}).invoices_per_task == 100
    for bad in ("0", "101", "many"):
        with pytest.raises(ConfigError) as err:
            load_settings({**base, "MLC_INVOICES_PER_TASK": bad})
        assert "MLC_INVOICES_PER_TASK" in str(err.value)
