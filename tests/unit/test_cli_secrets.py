"""The CLI's share of issue 12: no X3 URL holding a password is accepted, and what the CLI logs
or dies with is masked as the workers' logs are."""

from __future__ import annotations

import logging
import sys

import pytest

from ops import cli
from ops.cli import views
from pipeline import logs

PASSWORD = "Cli-Pa55word-7z!"  # noqa: S105


@pytest.mark.parametrize("argv", [
    ["connection", "set", "x3", "--url", f"https://svc:{PASSWORD}@x3.example",
     "--username", "svc", "--password-stdin"],
    ["connection", "set", "x3", "--url", f"http://svc:{PASSWORD}@x3.example",
     "--username", "svc", "--password-stdin"],
    ["connection", "set", "x3", "--transport", "graphql", "--url", "https://x3.example",
     "--client-id", "c", "--client-secret-stdin", "--refresh-token-stdin",
     "--token-url", f"https://c:{PASSWORD}@x3.example/token"],
    ["x3", "authorize", "--url", f"https://{PASSWORD}@x3.example", "--client-id", "c",
     "--token-url", "https://x3.example/token", "--client-secret-stdin",
     "--redirect-uri", "http://127.0.0.1:8765/cb", "--code", "abc"],
])
def test_a_url_with_userinfo_is_refused_in_one_line_without_the_password(argv, monkeypatch,
                                                                         capsys):
    monkeypatch.setattr(sys, "stdin", None)  # refused before any secret is read
    assert cli.main(argv) == 2
    message = capsys.readouterr().err.rstrip("\n")
    assert "must not hold a user name or password" in message
    assert PASSWORD not in message and "\n" not in message
    assert "://***@x3.example" in message


def test_cli_log_lines_are_masked_like_the_workers(monkeypatch, capsys):
    logs.register_secret(PASSWORD)

    def noisy(args):
        logging.getLogger("pipeline.run_once").warning("connecting with %s", PASSWORD)
        return 0

    monkeypatch.setattr(views, "cmd_status", noisy)
    assert cli.main(["status"]) == 0
    err = capsys.readouterr().err
    assert "connecting with ***" in err and PASSWORD not in err


def test_a_traceback_the_cli_dies_with_is_masked(monkeypatch, capsys):
    logs.register_secret(PASSWORD)

    def broken(args):
        raise RuntimeError(f"could not connect to postgresql://mlc:{PASSWORD}@db/mlc")

    monkeypatch.setattr(views, "cmd_status", broken)
    monkeypatch.setenv("MLC_DEBUG", "1")  # the one line, then the traceback: both masked
    assert cli.main(["status"]) == 1
    shown = capsys.readouterr().err
    assert shown.count("RuntimeError: could not connect to postgresql://***@db/mlc") == 2
    assert "Traceback" in shown and PASSWORD not in shown
