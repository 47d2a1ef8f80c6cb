"""Beside the domain: what an operator uses to run and watch the connector — the `mlc` command
line (ops.cli), the status, failure and reconciliation views, health checks and metrics.
The domain (pipeline/) never imports this package."""
