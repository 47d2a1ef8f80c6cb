"""`mlc`: the operator's command line. Every command reads the same validated settings.

One module per command group, each holding its arguments and handlers (its `register`);
this one builds the parser from them and runs a command through the one-line error handler.
"""

from __future__ import annotations

import sys
from typing import Any

from console import cli as console
from ops.cli import connection, db, mapping, replay, run, sandbox, vendor, views, x3
from ops.cli.errors import OneLineParser

GROUPS = (db, connection, x3, mapping, run, views, replay, vendor, sandbox, console)


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="mlc", description="Stampli to Sage X3 connector")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return p


def _configure_logging() -> None:
    """The workers' logging, masking included: a command that logs (run-once, replay ...) or
    dies with a traceback never prints a secret. Warnings and up unless MLC_LOG_LEVEL says
    DEBUG; text unless MLC_LOG_FORMAT says json."""
    import os
    import traceback

    from pipeline import logs

    level = "DEBUG" if os.environ.get("MLC_LOG_LEVEL") == "DEBUG" else "WARNING"
    logs.configure(level, os.environ.get("MLC_LOG_FORMAT") or "text", keep_handlers=True)

    def excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        sys.stderr.write(logs.mask("".join(traceback.format_exception(kind, exc, tb))))

    sys.excepthook = excepthook


def main(argv: list[str] | None = None) -> int:
    from ops.cli import errors as cli_errors

    cli_errors.fail_fast_defaults()
    _configure_logging()
    args = build_parser().parse_args(argv)
    return cli_errors.run(lambda: args.func(args))
