"""One line, not a traceback: what went wrong, where, and what to do about it.

`mlc` and the Celery processes (worker, beat) turn bad input and unreachable services into a
single line on stderr and exit 2. A command that ran and found something wrong (a failed check,
a refused replay) keeps exit 1. An unexpected error still says one line, and prints its
traceback when MLC_DEBUG=1.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from collections.abc import Callable
from datetime import date
from typing import Any, NoReturn

BAD_INPUT = 2  # bad input, bad settings, a service that does not answer
UNEXPECTED = 1


class CliError(Exception):
    """Bad input found by a command: the message is the whole story."""


class OneLineParser(argparse.ArgumentParser):
    """argparse errors in one line (usage is one `--help` away), exit 2 as argparse does."""

    def error(self, message: str) -> NoReturn:
        self.exit(BAD_INPUT, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def iso_date(text: str) -> date:
    """argparse type for YYYY-MM-DD options: a bad value is a one-line usage error."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid date {text!r}: expected YYYY-MM-DD, e.g. {date.today():%Y-%m-01}") from None


def _url(url: str) -> str:
    """The URL with its password masked (a URL without one is shown as it is)."""
    url = re.sub(r"(?i)([?&](?:password|pass|pwd)=)[^&]*", r"\1***", url)
    return re.sub(r"://([^:/@\s]*):[^@\s]*@", r"://\1:***@", url)


def _setting(name: str, default: str = "") -> str:
    return os.environ.get(name) or default


def _first_line(text: object) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _postgres(exc: BaseException) -> str:
    where = _url(_setting("DATABASE_URL", "(DATABASE_URL unset)"))
    text = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip())
    fatal = re.search(r"FATAL:\s*(.*)", text)
    reason = fatal.group(1) if fatal else _first_line(exc)
    hint = "check DATABASE_URL and that PostgreSQL runs"
    if "does not exist" in reason and "database" in reason:
        hint = "create it and run `mlc db upgrade`, or fix DATABASE_URL"
    elif "password authentication" in reason or "role" in reason:
        hint = "check the user and password in DATABASE_URL"
    return f"cannot use the database at {where}: {reason.rstrip('.')}; {hint}"


def _missing_table(exc: BaseException) -> str:
    where = _url(_setting("DATABASE_URL", "(DATABASE_URL unset)"))
    return (f"the database at {where} is not migrated ({_first_line(exc)}): "
            "run `mlc db upgrade`")


def _redis(exc: BaseException) -> str:
    where = _url(_setting("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
    return (f"cannot reach Redis (the Celery broker) at {where}: "
            f"{_first_line(exc).rstrip('.')}; check CELERY_BROKER_URL and that Redis runs")


def _os_error(exc: OSError) -> str:
    what = exc.strerror or _first_line(exc) or type(exc).__name__
    if exc.filename:
        return f"cannot read {exc.filename}: {what}; check the path"
    return f"{what}"


def _config(exc: BaseException) -> str:
    # "invalid configuration:\n  NAME: problem\n  ..." -> one line
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    head, problems = (lines[0].rstrip(":"), lines[1:]) if lines else ("invalid configuration", [])
    problems = [p.rstrip(".") for p in problems]
    return (f"{head}: {'; '.join(problems)}; fix the environment (README: Configuration)"
            if problems else head)


def describe(exc: BaseException) -> str | None:
    """The one line for a known failure, or None for an unexpected one."""
    import psycopg2

    from pipeline.config import ConfigError

    known: list[tuple[type[BaseException] | tuple[type[BaseException], ...],
                      Callable[[Any], str]]] = [
        (CliError, str),
        (ConfigError, _config),
        (psycopg2.errors.UndefinedTable, _missing_table),
        (psycopg2.OperationalError, _postgres),
    ]
    try:
        import redis
        from kombu.exceptions import OperationalError as KombuOperationalError

        known.append(((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                       KombuOperationalError), _redis))
    except ImportError:  # pragma: no cover - both come with celery[redis]
        pass
    from pipeline.connections import ConnectionMissing
    from pipeline.mapping import MappingFileError
    from pipeline.secrets import SecretError
    from pipeline.stampli.layout import LayoutError
    from pipeline.stampli.sftp import SftpError
    from pipeline.x3.errors import X3Error

    known += [
        ((ConnectionMissing, MappingFileError, SecretError, LayoutError), _first_line),
        (SftpError, lambda e: f"SFTP: {_first_line(e)}"),
        (X3Error, lambda e: f"X3: {_first_line(e)}"),
        (OSError, _os_error),
    ]
    try:
        from sandbox.sftp import SandboxError  # mlc sandbox sftp without sshd installed

        known.append((SandboxError, _first_line))
    except ImportError:  # pragma: no cover - the sandbox ships with the package
        pass
    for types, render in known:
        if isinstance(exc, types):
            return render(exc)
    return None


def say(message: str) -> None:
    from pipeline.logs import mask  # what the workers' logs mask, masked here too

    message = mask(message)
    print(f"mlc: {message}" if not message.startswith("mlc") else message, file=sys.stderr,
          flush=True)


def run(func: Callable[[], int]) -> int:
    """Run a command; a known failure becomes one line and exit 2."""
    try:
        return func()
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except SystemExit as exc:
        if isinstance(exc.code, str):  # SystemExit("mlc: ...") raised for bad input
            say(_first_line(exc.code))
            return BAD_INPUT
        raise
    except Exception as exc:  # noqa: BLE001 - the point: no traceback for the operator
        line = describe(exc)
        if line is not None:
            say(line)
            return BAD_INPUT
        say(f"unexpected error: {type(exc).__name__}: {_first_line(exc)} "
            "(MLC_DEBUG=1 shows the traceback)")
        if os.environ.get("MLC_DEBUG"):
            from pipeline.logs import mask

            print(mask(traceback.format_exc()), file=sys.stderr, end="", flush=True)
        return UNEXPECTED


def fail_fast_defaults() -> None:
    """Services that do not answer are reported within seconds, not minutes."""
    os.environ.setdefault("PGCONNECT_TIMEOUT", "5")  # libpq: connect timeout in seconds
