"""Every `mlc ...` command the README shows is one the CLI accepts."""

import re
import shlex
from pathlib import Path

import pytest

from ops.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_commands():
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    joined = "\n".join(blocks).replace("\\\n", " ")
    for line in joined.splitlines():
        line = line.split("  #")[0].strip()
        if line.startswith("mlc "):
            yield line


COMMANDS = list(readme_commands())


def test_the_readme_shows_commands():
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses(command):
    # Optional parts in [brackets] are left out; of alternatives A|B the first is taken.
    args = shlex.split(re.sub(r"\[[^\]]*\]", "", command))[1:]
    args = [a.split("|")[0] for a in args]
    try:
        build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"README shows `{command}`, which mlc rejects")
