"""`mlc --help` lists every command, and every option of every command says what it does."""

from __future__ import annotations

import argparse

from ops.cli import build_parser


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert name in helped, f"`mlc {' '.join(path)} --help` does not list {name}"
                yield from _commands(sub, (*path, name))


def test_every_command_is_listed_with_help():
    top = build_parser().format_help()
    for name in ("db", "connection", "x3", "secrets", "mapping", "poll", "run-once", "status",
                 "failed", "audit", "report", "replay", "health", "metrics", "sandbox", "demo"):
        assert f"    {name}" in top, f"mlc --help does not list {name}"
    for path, parser in _commands(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, f"mlc {' '.join(path)} {choice.dest}: no help"


def test_every_option_and_argument_has_help():
    missing = []
    for path, parser in _commands(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if not (action.help and action.help.strip()) or action.help == argparse.SUPPRESS:
                name = "/".join(action.option_strings) or action.dest
                missing.append(f"mlc {' '.join(path)} {name}")
    assert not missing, "options without help text:\n" + "\n".join(missing)


def test_demo_keep_help_says_what_it_keeps():
    demo = dict(_commands(build_parser()))[("demo",)]
    keep = next(a for a in demo._actions if "--keep" in a.option_strings)
    assert "work directory" in keep.help and "database" in keep.help


def test_readme_documents_every_setting_and_the_sandbox():
    from pathlib import Path

    from pipeline.config import _SettingsSchema

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration (environment)", 1)[1].split("\n## ", 1)[0]
    names = set(_SettingsSchema().fields) | {"MLC_DEMO_BROKER", "MLC_ADMIN_DSN", "MLC_DEBUG",
                                             "MLC_AFTER_FAILURE", "MLC_LOG_FORMAT"}
    missing = sorted(n for n in names if f"`{n}`" not in table and f"{n}`" not in table)
    assert not missing, f"README configuration table lacks {missing}"
    assert "mlc sandbox x3" in readme and "mlc sandbox sftp" in readme
