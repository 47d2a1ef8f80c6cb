"""Settings from the environment, validated once, with one message that lists every problem."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet
from marshmallow import Schema, ValidationError, validate, validates_schema
from marshmallow import fields as mf


class ConfigError(Exception):
    """Raised at start when the environment does not describe a runnable connector."""


def _fernet_keys(value: str) -> None:
    keys = [k.strip() for k in value.split(",") if k.strip()]
    if not keys:
        raise ValidationError("needs at least one Fernet key (comma-separated, newest first)")
    for index, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            # Never echo the key itself: it is a secret even when malformed.
            raise ValidationError(f"key #{index} is not a valid Fernet key") from None


def _url(*schemes: str) -> validate.Validator:
    return validate.Regexp(
        rf"^({'|'.join(schemes)})://", error=f"must be a URL starting with {' or '.join(schemes)}://"
    )


def _redact_url(url: str) -> str:
    """user:***@host, and any password=... query parameter masked too."""
    url = re.sub(r"(?i)([?&](?:password|pass|pwd)=)[^&]*", r"\1***", url)
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def _split(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip())


def setting(schema: mf.Field, *, env: str | None = None,
            convert: Callable[[Any], Any] | None = None,
            fallback: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """One setting, declared once as a field of `Settings`: the environment variable (by default
    MLC_ + the field's name upper-cased), its marshmallow field (default, validation), how the
    loaded value becomes the attribute (`convert`), and what an unset optional value falls back
    to, computed from the other settings (`fallback`). The comment above it is its doc."""
    return dataclasses.field(metadata={"env": env, "schema": schema, "convert": convert,
                                       "fallback": fallback})


def _env_name(f: dataclasses.Field) -> str:
    return f.metadata["env"] or f"MLC_{f.name.upper()}"


def _range(low: float | None = None, high: float | None = None) -> validate.Validator:
    return validate.Range(min=low, max=high)


@dataclass(frozen=True)
class Settings:
    database_url: str = setting(mf.Str(required=True, validate=_url("postgresql", "postgres")),
                                env="DATABASE_URL")
    broker_url: str = setting(mf.Str(load_default="redis://127.0.0.1:6379/0",
                                     validate=_url("redis", "rediss")), env="CELERY_BROKER_URL")
    # Default: the broker.
    result_backend: str = setting(mf.Str(load_default=None, allow_none=True),
                                  env="CELERY_RESULT_BACKEND",
                                  fallback=lambda s: s["broker_url"])
    # Fernet keys, comma-separated, newest first.
    secret_keys: tuple[str, ...] = setting(mf.Str(required=True, validate=_fernet_keys),
                                           convert=_split)
    poll_interval: int = setting(mf.Int(load_default=900, validate=_range(5, 86400)))
    invoice_patterns: tuple[str, ...] = setting(
        mf.Str(load_default="invoices_*.csv,invoices_*.xml"), convert=_split)
    vendor_patterns: tuple[str, ...] = setting(
        mf.Str(load_default="vendors_*.csv,vendors_*.xml"), convert=_split)
    stability: str = setting(mf.Str(load_default="listing",
                                    validate=validate.OneOf(["listing", "done_marker"])))
    after_download: str = setting(mf.Str(load_default="leave",
                                         validate=validate.OneOf(["leave", "move", "delete"])))
    # A file refused as a whole (unreadable): move it to failed/ beside it, or leave it.
    after_failure: str = setting(mf.Str(load_default="move",
                                        validate=validate.OneOf(["leave", "move"])))
    max_file_mb: int = setting(mf.Int(load_default=200, validate=_range(1, 10240)))
    stability_recheck: int = setting(mf.Int(load_default=10, validate=_range(1, 3600)))
    dry_run: bool = setting(mf.Bool(load_default=False))
    stampli_layout: str | None = setting(mf.Str(load_default=None, allow_none=True))
    x3_company: str = setting(mf.Str(load_default="US01"))
    x3_site: str = setting(mf.Str(load_default="US011"))
    x3_coa: str = setting(mf.Str(load_default="CONS"))
    x3_dimension_type: str = setting(mf.Str(load_default="CCT"))
    x3_invoice_class: str = setting(mf.Str(load_default="BPSINVOICE"))
    x3_invoice_type: str = setting(mf.Str(load_default="INV"))
    x3_credit_note_type: str = setting(mf.Str(load_default="CRN"))
    x3_timeout: float = setting(mf.Float(load_default=30.0, validate=_range(1, 600)))
    # Per socket read, a timeout never ends a server that drips a byte at a time: every X3 and
    # token call (a read with its retries, a create) also has this overall deadline.
    # Default: 4 x MLC_X3_TIMEOUT.
    x3_deadline: float = setting(mf.Float(load_default=None, allow_none=True,
                                          validate=_range(1, 3600)),
                                 fallback=lambda s: 4 * s["x3_timeout"])
    x3_max_response_mb: float = setting(mf.Float(load_default=10.0, validate=_range(0.1, 1024)))
    # X3 licenses concurrent web-service sessions: the cap holds across every worker process.
    x3_max_concurrency: int = setting(mf.Int(load_default=4, validate=_range(1, 256)))
    # X3 keeps working on a create whose client gave up: a "not found" counts only once the
    # first create can no longer be in flight. Well above MLC_X3_TIMEOUT; raise it for an X3
    # that queues requests for longer.
    x3_inflight_window: float = setting(mf.Float(load_default=600.0, validate=_range(1, 86400)))
    # code: the connector gives a new supplier its code (the vendor id made a valid X3 code);
    # sequence: X3 numbers suppliers itself, the connector links the number it answers.
    x3_supplier_numbering: str = setting(mf.Str(load_default="code",
                                                validate=validate.OneOf(["code", "sequence"])))
    x3_graphql_invoice_package: str = setting(mf.Str(load_default="x3Accounting"))
    x3_graphql_invoice_node: str = setting(mf.Str(load_default="supplierBpInvoice"))
    task_time_limit: int = setting(mf.Int(load_default=600, validate=_range(2)))
    # Celery task events: Flower's view of tasks needs them (compose keeps them on); off saves
    # two event messages per task (bench/e2e.py --no-events measures what they cost).
    task_events: bool = setting(mf.Bool(load_default=True))
    # Invoices of one file carried by one mlc.process_invoices message: Celery's own work per
    # message (consumer, events, tracing) is paid once per batch, not once per invoice. 1 sends
    # one mlc.process_invoice per invoice, exactly as before batches.
    invoices_per_task: int = setting(mf.Int(load_default=8, validate=_range(1, 100)))
    visibility_timeout: int = setting(mf.Int(load_default=7200, validate=_range(5)))
    retry_backoff_max: int = setting(mf.Int(load_default=1800, validate=_range(1)))
    max_retries: int = setting(mf.Int(load_default=8, validate=_range(0, 100)))
    # Work unchanged in Postgres for this long is re-enqueued by the next poll (its message may
    # be lost: Redis keeps nothing on disk). Default: the longest retry countdown plus the task
    # time limit, so a message legitimately waiting for its retry is not doubled.
    requeue_after: int = setting(mf.Int(load_default=None, allow_none=True, validate=_range(1)),
                                 fallback=lambda s: s["retry_backoff_max"] + s["task_time_limit"])
    # Every wait on Postgres and Redis is bounded: a timeout is a retryable error naming the
    # setting. Seconds; 0 turns a Postgres one off (Postgres's own meaning).
    pg_connect_timeout: int = setting(mf.Int(load_default=10, validate=_range(1, 600)))
    pg_statement_timeout: float = setting(mf.Float(load_default=300.0, validate=_range(0, 86400)))
    # Row locks and advisory locks alike (a resolver waiting for the one creating its supplier).
    pg_lock_timeout: float = setting(mf.Float(load_default=120.0, validate=_range(0, 86400)))
    # A token refresh holds its row lock through an HTTP call: above MLC_X3_TIMEOUT.
    pg_idle_in_transaction_timeout: float = setting(mf.Float(load_default=900.0,
                                                             validate=_range(0, 86400)))
    redis_socket_timeout: float = setting(mf.Float(load_default=5.0, validate=_range(0.05, 600)))
    redis_connect_timeout: float = setting(mf.Float(load_default=3.0,
                                                    validate=_range(0.05, 600)))
    # Export parsing bounds (pipeline/stampli/limits.py): a refused row names its line and the
    # setting; the deadline (default 80% of MLC_TASK_TIME_LIMIT) must leave the task time to
    # record the refusal.
    max_line_kb: int = setting(mf.Int(load_default=64, validate=_range(1, 65536)))
    max_field_kb: int = setting(mf.Int(load_default=16, validate=_range(1, 65536)))
    max_columns: int = setting(mf.Int(load_default=256, validate=_range(8, 100_000)))
    max_invoice_lines: int = setting(mf.Int(load_default=10_000, validate=_range(1, 1_000_000)))
    parse_deadline: float = setting(mf.Float(load_default=None, allow_none=True,
                                             validate=_range(1)),
                                    fallback=lambda s: s["task_time_limit"] * 0.8)
    date_years_back: int = setting(mf.Int(load_default=10, validate=_range(0, 200)))
    date_years_ahead: int = setting(mf.Int(load_default=1, validate=_range(0, 200)))
    allow_zero_invoices: bool = setting(mf.Bool(load_default=False))
    log_level: str = setting(mf.Str(load_default="INFO", validate=validate.OneOf(
        ["DEBUG", "INFO", "WARNING", "ERROR"])))

    def __repr__(self) -> str:
        # Keys and the database password stay out of reprs that end up in logs.
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["secret_keys"] = f"<{len(self.secret_keys)} keys>"
        shown["database_url"] = _redact_url(self.database_url)
        shown["broker_url"] = _redact_url(self.broker_url)
        if self.result_backend:
            shown["result_backend"] = _redact_url(self.result_backend)
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


class _CrossFieldChecks(Schema):
    @validates_schema
    def _celery_timeouts(self, data: dict, **_: object) -> None:
        # A Redis message not acked within visibility_timeout is delivered again (celery#7651):
        # it must outlive the longest task run and the longest retry countdown.
        vt = data.get("MLC_VISIBILITY_TIMEOUT")
        if vt is None:
            return
        problems = {}
        if data.get("MLC_TASK_TIME_LIMIT", 0) >= vt:
            problems["MLC_TASK_TIME_LIMIT"] = ["must be lower than MLC_VISIBILITY_TIMEOUT"]
        window, timeout = data.get("MLC_X3_INFLIGHT_WINDOW"), data.get("MLC_X3_TIMEOUT")
        idle = data.get("MLC_PG_IDLE_IN_TRANSACTION_TIMEOUT")
        if idle and timeout is not None and idle <= timeout:
            problems["MLC_PG_IDLE_IN_TRANSACTION_TIMEOUT"] = [
                "must be above MLC_X3_TIMEOUT (a token refresh keeps its transaction open"
                " through the call), or 0"]
        deadline = data.get("MLC_PARSE_DEADLINE")
        if deadline is not None and deadline >= data.get("MLC_TASK_TIME_LIMIT", 600):
            problems["MLC_PARSE_DEADLINE"] = ["must be lower than MLC_TASK_TIME_LIMIT (the parse"
                                              " task must outlive it to record the refusal)"]
        x3_deadline = data.get("MLC_X3_DEADLINE")
        if x3_deadline is not None and timeout is not None and x3_deadline < timeout:
            problems["MLC_X3_DEADLINE"] = ["must be at least MLC_X3_TIMEOUT"]
        effective = x3_deadline or (4 * timeout if timeout is not None else None)
        if window is not None and effective is not None and window <= effective:
            # X3 keeps working on a create whose client gave up: the window starts with it.
            problems["MLC_X3_INFLIGHT_WINDOW"] = [
                f"must be above MLC_X3_DEADLINE ({effective:g} s; default 4 x MLC_X3_TIMEOUT):"
                " a create may commit after its client gave up"]
        if data.get("MLC_RETRY_BACKOFF_MAX", 0) >= vt:
            problems["MLC_RETRY_BACKOFF_MAX"] = ["must be lower than MLC_VISIBILITY_TIMEOUT"]
        if problems:
            raise ValidationError(problems)


# The schema reads the environment: one field per setting, named for its variable.
_SettingsSchema = type("_SettingsSchema", (_CrossFieldChecks,),
                       {_env_name(f): f.metadata["schema"] for f in fields(Settings)})


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError listing all problems at once."""
    env = os.environ if environ is None else environ
    schema = _SettingsSchema()
    raw = {name: env[name] for name in schema.fields if name in env and env[name] != ""}
    try:
        data = schema.load(raw)
    except ValidationError as exc:
        lines = []
        for name, messages in sorted(_flatten(exc.messages).items()):
            lines.append(f"  {name}: {'; '.join(messages)}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None
    values = {}
    for f in fields(Settings):
        value = data[_env_name(f)]
        convert = f.metadata["convert"]
        values[f.name] = convert(value) if convert and value is not None else value
    for f in fields(Settings):
        if values[f.name] is None and f.metadata["fallback"]:
            values[f.name] = f.metadata["fallback"](values)
    return Settings(**values)


def _flatten(messages: object, prefix: str = "") -> dict[str, list[str]]:
    if isinstance(messages, dict):
        out: dict[str, list[str]] = {}
        for key, value in messages.items():
            name = "(settings)" if key == "_schema" else str(key)
            for k, v in _flatten(value, name).items():
                out.setdefault(k, []).extend(v)
        return out
    if isinstance(messages, list):
        return {prefix: [str(m) for m in messages]}
    return {prefix: [str(messages)]}


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings; read once, at first use."""
    return load_settings()
