"""`mlc`, the operator's command line (`python -m ops.cli`, or the `mlc` console script)."""

from ops.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
