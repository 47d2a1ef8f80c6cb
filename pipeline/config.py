"""Settings from the environment, validated once, with one message that lists every problem."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache

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


class _SettingsSchema(Schema):
    DATABASE_URL = mf.Str(required=True, validate=_url("postgresql", "postgres"))
    CELERY_BROKER_URL = mf.Str(load_default="redis://127.0.0.1:6379/0",
                               validate=_url("redis", "rediss"))
    CELERY_RESULT_BACKEND = mf.Str(load_default=None, allow_none=True)
    MLC_SECRET_KEYS = mf.Str(required=True, validate=_fernet_keys)
    MLC_POLL_INTERVAL = mf.Int(load_default=900, validate=validate.Range(min=5, max=86400))
    MLC_INVOICE_PATTERNS = mf.Str(load_default="invoices_*.csv,invoices_*.xml")
    MLC_VENDOR_PATTERNS = mf.Str(load_default="vendors_*.csv,vendors_*.xml")
    MLC_STABILITY = mf.Str(load_default="listing",
                           validate=validate.OneOf(["listing", "done_marker"]))
    MLC_AFTER_DOWNLOAD = mf.Str(load_default="leave",
                                validate=validate.OneOf(["leave", "move", "delete"]))
    # A file refused as a whole (unreadable): move it to failed/ beside it, or leave it.
    MLC_AFTER_FAILURE = mf.Str(load_default="move", validate=validate.OneOf(["leave", "move"]))
    MLC_MAX_FILE_MB = mf.Int(load_default=200, validate=validate.Range(min=1, max=10240))
    MLC_STABILITY_RECHECK = mf.Int(load_default=10, validate=validate.Range(min=1, max=3600))
    MLC_DRY_RUN = mf.Bool(load_default=False)
    MLC_STAMPLI_LAYOUT = mf.Str(load_default=None, allow_none=True)
    MLC_X3_COMPANY = mf.Str(load_default="US01")
    MLC_X3_SITE = mf.Str(load_default="US011")
    MLC_X3_COA = mf.Str(load_default="CONS")
    MLC_X3_DIMENSION_TYPE = mf.Str(load_default="CCT")
    MLC_X3_INVOICE_CLASS = mf.Str(load_default="BPSINVOICE")
    MLC_X3_INVOICE_TYPE = mf.Str(load_default="INV")
    MLC_X3_CREDIT_NOTE_TYPE = mf.Str(load_default="CRN")
    MLC_X3_TIMEOUT = mf.Float(load_default=30.0, validate=validate.Range(min=1, max=600))
    # Per socket read, a timeout never ends a server that drips a byte at a time: every X3 and
    # token call (a read with its retries, a create) also has this overall deadline.
    # Default: 4 x MLC_X3_TIMEOUT.
    MLC_X3_DEADLINE = mf.Float(load_default=None, allow_none=True,
                               validate=validate.Range(min=1, max=3600))
    MLC_X3_MAX_RESPONSE_MB = mf.Float(load_default=10.0, validate=validate.Range(min=0.1,
                                                                                 max=1024))
    # X3 licenses concurrent web-service sessions: the cap holds across every worker process.
    MLC_X3_MAX_CONCURRENCY = mf.Int(load_default=4, validate=validate.Range(min=1, max=256))
    # X3 keeps working on a create whose client gave up: a "not found" counts only once the
    # first create can no longer be in flight. Well above MLC_X3_TIMEOUT; raise it for an X3
    # that queues requests for longer.
    MLC_X3_INFLIGHT_WINDOW = mf.Float(load_default=600.0,
                                      validate=validate.Range(min=1, max=86400))
    # code: the connector gives a new supplier its code (the vendor id made a valid X3 code);
    # sequence: X3 numbers suppliers itself, the connector links the number it answers.
    MLC_X3_SUPPLIER_NUMBERING = mf.Str(load_default="code",
                                       validate=validate.OneOf(["code", "sequence"]))
    MLC_X3_GRAPHQL_INVOICE_PACKAGE = mf.Str(load_default="x3Accounting")
    MLC_X3_GRAPHQL_INVOICE_NODE = mf.Str(load_default="supplierBpInvoice")
    MLC_TASK_TIME_LIMIT = mf.Int(load_default=600, validate=validate.Range(min=2))
    MLC_VISIBILITY_TIMEOUT = mf.Int(load_default=7200, validate=validate.Range(min=5))
    MLC_RETRY_BACKOFF_MAX = mf.Int(load_default=1800, validate=validate.Range(min=1))
    MLC_MAX_RETRIES = mf.Int(load_default=8, validate=validate.Range(min=0, max=100))
    # Work unchanged in Postgres for this long is re-enqueued by the next poll (its message may
    # be lost: Redis keeps nothing on disk). Default: the longest retry countdown plus the task
    # time limit, so a message legitimately waiting for its retry is not doubled.
    MLC_REQUEUE_AFTER = mf.Int(load_default=None, allow_none=True,
                               validate=validate.Range(min=1))
    # Every wait on Postgres and Redis is bounded: a timeout is a retryable error naming the
    # setting. Seconds; 0 turns a Postgres one off (Postgres's own meaning).
    MLC_PG_CONNECT_TIMEOUT = mf.Int(load_default=10, validate=validate.Range(min=1, max=600))
    MLC_PG_STATEMENT_TIMEOUT = mf.Float(load_default=300.0,
                                        validate=validate.Range(min=0, max=86400))
    # Row locks and advisory locks alike (a resolver waiting for the one creating its supplier).
    MLC_PG_LOCK_TIMEOUT = mf.Float(load_default=120.0, validate=validate.Range(min=0, max=86400))
    # A token refresh holds its row lock through an HTTP call: above MLC_X3_TIMEOUT.
    MLC_PG_IDLE_IN_TRANSACTION_TIMEOUT = mf.Float(load_default=900.0,
                                                  validate=validate.Range(min=0, max=86400))
    MLC_REDIS_SOCKET_TIMEOUT = mf.Float(load_default=5.0,
                                        validate=validate.Range(min=0.05, max=600))
    MLC_REDIS_CONNECT_TIMEOUT = mf.Float(load_default=3.0,
                                         validate=validate.Range(min=0.05, max=600))
    # Export parsing bounds (pipeline/stampli/limits.py): a refused row names its line and the
    # setting; the deadline (default 80% of MLC_TASK_TIME_LIMIT) must leave the task time to
    # record the refusal.
    MLC_MAX_LINE_KB = mf.Int(load_default=64, validate=validate.Range(min=1, max=65536))
    MLC_MAX_FIELD_KB = mf.Int(load_default=16, validate=validate.Range(min=1, max=65536))
    MLC_MAX_COLUMNS = mf.Int(load_default=256, validate=validate.Range(min=8, max=100_000))
    MLC_MAX_INVOICE_LINES = mf.Int(load_default=10_000,
                                   validate=validate.Range(min=1, max=1_000_000))
    MLC_PARSE_DEADLINE = mf.Float(load_default=None, allow_none=True,
                                  validate=validate.Range(min=1))
    MLC_DATE_YEARS_BACK = mf.Int(load_default=10, validate=validate.Range(min=0, max=200))
    MLC_DATE_YEARS_AHEAD = mf.Int(load_default=1, validate=validate.Range(min=0, max=200))
    MLC_ALLOW_ZERO_INVOICES = mf.Bool(load_default=False)
    MLC_LOG_LEVEL = mf.Str(
        load_default="INFO", validate=validate.OneOf(["DEBUG", "INFO", "WARNING", "ERROR"])
    )

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


@dataclass(frozen=True)
class Settings:
    database_url: str
    broker_url: str
    result_backend: str | None
    secret_keys: tuple[str, ...]
    poll_interval: int
    invoice_patterns: tuple[str, ...]
    vendor_patterns: tuple[str, ...]
    stability: str
    after_download: str
    max_file_mb: int
    stability_recheck: int
    dry_run: bool
    stampli_layout: str | None
    x3_company: str
    x3_site: str
    x3_coa: str
    x3_dimension_type: str
    x3_invoice_class: str
    x3_invoice_type: str
    x3_credit_note_type: str
    x3_timeout: float
    x3_max_concurrency: int
    x3_inflight_window: float
    x3_supplier_numbering: str
    x3_graphql_invoice_package: str
    x3_graphql_invoice_node: str
    task_time_limit: int
    visibility_timeout: int
    retry_backoff_max: int
    max_retries: int
    log_level: str
    requeue_after: int = 2400
    after_failure: str = "move"
    pg_connect_timeout: int = 10
    pg_statement_timeout: float = 300.0
    pg_lock_timeout: float = 120.0
    pg_idle_in_transaction_timeout: float = 900.0
    redis_socket_timeout: float = 5.0
    redis_connect_timeout: float = 3.0
    max_line_kb: int = 64
    max_field_kb: int = 16
    max_columns: int = 256
    max_invoice_lines: int = 10_000
    parse_deadline: float = 480.0
    date_years_back: int = 10
    date_years_ahead: int = 1
    allow_zero_invoices: bool = False
    x3_deadline: float = 120.0
    x3_max_response_mb: float = 10.0

    def __repr__(self) -> str:
        # Keys and the database password stay out of reprs that end up in logs.
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["secret_keys"] = f"<{len(self.secret_keys)} keys>"
        shown["database_url"] = _redact_url(self.database_url)
        shown["broker_url"] = _redact_url(self.broker_url)
        if self.result_backend:
            shown["result_backend"] = _redact_url(self.result_backend)
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


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
    return Settings(
        database_url=data["DATABASE_URL"],
        broker_url=data["CELERY_BROKER_URL"],
        result_backend=data["CELERY_RESULT_BACKEND"] or data["CELERY_BROKER_URL"],
        secret_keys=_split(data["MLC_SECRET_KEYS"]),
        poll_interval=data["MLC_POLL_INTERVAL"],
        invoice_patterns=_split(data["MLC_INVOICE_PATTERNS"]),
        vendor_patterns=_split(data["MLC_VENDOR_PATTERNS"]),
        stability=data["MLC_STABILITY"],
        after_download=data["MLC_AFTER_DOWNLOAD"],
        max_file_mb=data["MLC_MAX_FILE_MB"],
        stability_recheck=data["MLC_STABILITY_RECHECK"],
        dry_run=data["MLC_DRY_RUN"],
        stampli_layout=data["MLC_STAMPLI_LAYOUT"],
        x3_company=data["MLC_X3_COMPANY"],
        x3_site=data["MLC_X3_SITE"],
        x3_coa=data["MLC_X3_COA"],
        x3_dimension_type=data["MLC_X3_DIMENSION_TYPE"],
        x3_invoice_class=data["MLC_X3_INVOICE_CLASS"],
        x3_invoice_type=data["MLC_X3_INVOICE_TYPE"],
        x3_credit_note_type=data["MLC_X3_CREDIT_NOTE_TYPE"],
        x3_timeout=data["MLC_X3_TIMEOUT"],
        x3_max_concurrency=data["MLC_X3_MAX_CONCURRENCY"],
        x3_inflight_window=data["MLC_X3_INFLIGHT_WINDOW"],
        x3_supplier_numbering=data["MLC_X3_SUPPLIER_NUMBERING"],
        x3_graphql_invoice_package=data["MLC_X3_GRAPHQL_INVOICE_PACKAGE"],
        x3_graphql_invoice_node=data["MLC_X3_GRAPHQL_INVOICE_NODE"],
        task_time_limit=data["MLC_TASK_TIME_LIMIT"],
        visibility_timeout=data["MLC_VISIBILITY_TIMEOUT"],
        retry_backoff_max=data["MLC_RETRY_BACKOFF_MAX"],
        max_retries=data["MLC_MAX_RETRIES"],
        log_level=data["MLC_LOG_LEVEL"],
        requeue_after=data["MLC_REQUEUE_AFTER"]
        or data["MLC_RETRY_BACKOFF_MAX"] + data["MLC_TASK_TIME_LIMIT"],
        after_failure=data["MLC_AFTER_FAILURE"],
        pg_connect_timeout=data["MLC_PG_CONNECT_TIMEOUT"],
        pg_statement_timeout=data["MLC_PG_STATEMENT_TIMEOUT"],
        pg_lock_timeout=data["MLC_PG_LOCK_TIMEOUT"],
        pg_idle_in_transaction_timeout=data["MLC_PG_IDLE_IN_TRANSACTION_TIMEOUT"],
        redis_socket_timeout=data["MLC_REDIS_SOCKET_TIMEOUT"],
        redis_connect_timeout=data["MLC_REDIS_CONNECT_TIMEOUT"],
        max_line_kb=data["MLC_MAX_LINE_KB"],
        max_field_kb=data["MLC_MAX_FIELD_KB"],
        max_columns=data["MLC_MAX_COLUMNS"],
        max_invoice_lines=data["MLC_MAX_INVOICE_LINES"],
        parse_deadline=data["MLC_PARSE_DEADLINE"] or data["MLC_TASK_TIME_LIMIT"] * 0.8,
        date_years_back=data["MLC_DATE_YEARS_BACK"],
        date_years_ahead=data["MLC_DATE_YEARS_AHEAD"],
        allow_zero_invoices=data["MLC_ALLOW_ZERO_INVOICES"],
        x3_deadline=data["MLC_X3_DEADLINE"] or 4 * data["MLC_X3_TIMEOUT"],
        x3_max_response_mb=data["MLC_X3_MAX_RESPONSE_MB"],
    )


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
