"""Celery app. Configuration is read when Celery first needs it, so importing this module never
fails; starting a worker or beat with a bad environment, a database it cannot use or one not
migrated fails at once with one line on stderr and exit 2 (ops.cli.errors)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from celery import Celery, signals

from pipeline.config import ConfigError, settings
from workers.settings import celery_config, monitor_config

log = logging.getLogger(__name__)
app = Celery("mlc", include=["tasks.fetch", "tasks.parse", "tasks.invoice", "tasks.replay"])


def _celery_process() -> bool:
    """True in `celery -A workers ...` (worker, beat, flower), not in mlc or a test."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return bool(spec and spec.name.startswith("celery")) or Path(sys.argv[0]).name == "celery"


def _role() -> str:
    if not _celery_process():
        return "client"
    return next((a for a in sys.argv[1:] if a in ("worker", "beat", "flower")), "celery")


def _stop(exc: BaseException) -> None:
    """In a Celery process, a known start-up failure is one line and exit 2; elsewhere the
    caller (mlc's handler, a test) gets the exception."""
    from ops.cli import errors as cli_errors

    line = cli_errors.describe(exc)
    if line is None or not _celery_process():
        raise exc
    print(f"mlc {_role()}: {line}", file=sys.stderr, flush=True)
    os._exit(cli_errors.BAD_INPUT)  # Celery turns a SystemExit here into a traceback


@app.on_configure.connect
def _configure(sender: Celery, **_: object) -> None:
    if _role() == "flower":
        sender.conf.update(monitor_config(os.environ))
        return
    try:
        sender.conf.update(celery_config(settings()))
    except ConfigError as exc:
        _stop(exc)
        raise


@signals.setup_logging.connect
def _logging(**_: object) -> None:
    # Our own handler, with the redaction filter; Celery does not take over the root logger.
    from pipeline.logs import configure

    configure(os.environ.get("MLC_LOG_LEVEL") or "INFO" if _role() == "flower"
              else settings().log_level)


def _preflight() -> None:
    """The database answers and is migrated, and Redis answers, or the process stops now with
    one line (not after minutes of retries, nor at its first task)."""
    from ops.cli import errors as cli_errors
    from pipeline import migrate
    from workers.send import broker_ping

    cli_errors.fail_fast_defaults()
    try:
        broker_ping(settings().broker_url)
        pending = sorted({p.name for p in migrate.available()}
                         - set(migrate.applied(settings().database_url)))
    except Exception as exc:  # noqa: BLE001 - a known failure is one line, others re-raised
        _stop(exc)
        raise
    if pending:
        _stop(cli_errors.CliError(f"the database is not migrated ({', '.join(pending)} "
                                  "pending): run `mlc db upgrade`"))


@signals.worker_init.connect
def _worker_preflight(**_: object) -> None:
    _preflight()


@signals.beat_init.connect
def _beat_start(**_: object) -> None:
    _preflight()
    # Beat's interval schedule first fires one whole interval after start (15 min after a
    # deploy): poll now. A poll already running makes this one return at once (advisory lock).
    interval = float(settings().poll_interval)
    app.send_task("mlc.fetch_exports", expires=interval, ignore_result=True)
    log.info("beat started: first poll queued now, then every %g s", interval)


