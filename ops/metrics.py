"""Prometheus metrics of the business, read from Postgres at scrape time: the ledger is the truth,
so any replica (or `mlc metrics` once) reports the same figures."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg2.extensions import cursor as Cursor

from pipeline import db


class LedgerCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        with db.transaction() as cur:
            yield from _collect(cur)


def _collect(cur: Cursor) -> Iterator[Metric]:
    files = GaugeMetricFamily("mlc_files", "Source files by status", labels=["status"])
    cur.execute("SELECT status, count(*) AS n FROM source_files GROUP BY 1")
    for r in cur.fetchall():
        files.add_metric([r["status"]], r["n"])
    yield files

    invoices = GaugeMetricFamily("mlc_invoices", "Invoices by status", labels=["status"])
    cur.execute("SELECT status, count(*) AS n FROM invoices GROUP BY 1")
    for r in cur.fetchall():
        invoices.add_metric([r["status"]], r["n"])
    yield invoices

    cur.execute(
        "SELECT"
        " count(*) FILTER (WHERE stage = 'invoice_post' AND outcome = 'ok') AS posts,"
        " count(*) FILTER (WHERE stage = 'invoice_post' AND outcome = 'error'"
        "   AND detail->>'terminal' = 'true') AS terminal_failures,"
        " count(*) FILTER (WHERE outcome = 'error' AND detail->>'retry' = 'true') AS retries,"
        " count(*) FILTER (WHERE stage = 'vendor_create' AND outcome = 'ok') AS vendors,"
        " count(*) FILTER (WHERE stage = 'replay') AS replays"
        " FROM audit_events")
    row = cur.fetchone()
    for name, help_text, key in (
        ("mlc_invoices_posted", "Invoices posted to X3", "posts"),
        ("mlc_invoices_failed", "Invoices that failed terminally", "terminal_failures"),
        ("mlc_retries", "Task retries after an error (each is on the audit trail)", "retries"),
        ("mlc_suppliers_created", "Suppliers created in X3", "vendors"),
        ("mlc_replays", "Invoices replayed", "replays"),
    ):
        yield CounterMetricFamily(name, help_text, value=row[key])

    cur.execute("SELECT count(*) AS n FROM parse_rejections")
    yield CounterMetricFamily("mlc_parse_rejections", "Invoices rejected at parse",
                              value=cur.fetchone()["n"])

    latency = GaugeMetricFamily("mlc_x3_post_latency_seconds",
                                "X3 invoice create latency over the last hour",
                                labels=["quantile"])
    cur.execute(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY (detail->>'elapsed_ms')::float) AS p50,"
        " percentile_cont(0.95) WITHIN GROUP (ORDER BY (detail->>'elapsed_ms')::float) AS p95"
        " FROM audit_events WHERE stage = 'invoice_post' AND outcome = 'ok'"
        " AND detail ? 'elapsed_ms' AND at > now() - interval '1 hour'")
    row = cur.fetchone()
    for q in ("p50", "p95"):
        if row[q] is not None:
            latency.add_metric(["0.5" if q == "p50" else "0.95"], row[q] / 1000)
    yield latency

    cur.execute("SELECT extract(epoch FROM max(started_at)) AS t,"
                " extract(epoch FROM max(started_at) FILTER (WHERE outcome = 'ok')) AS ok,"
                " count(*) FILTER (WHERE outcome = 'error') AS errors FROM polls")
    row = cur.fetchone()
    yield GaugeMetricFamily("mlc_last_poll_timestamp_seconds",
                            "When the export was last polled, whatever the outcome",
                            value=float(row["t"] or 0))
    # Alert on this one: it stops advancing when the SFTP export cannot be read.
    yield GaugeMetricFamily("mlc_last_successful_poll_timestamp_seconds",
                            "When a poll last read the export without error",
                            value=float(row["ok"] or 0))
    yield CounterMetricFamily("mlc_poll_errors", "Polls that could not read the export",
                              value=row["errors"])


def exposition() -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(LedgerCollector())
    return generate_latest(registry)


def serve(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - a metrics endpoint
    import threading

    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(LedgerCollector())
    start_http_server(port, addr=host, registry=registry)
    threading.Event().wait()
