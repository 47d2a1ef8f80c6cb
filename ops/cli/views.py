"""The operator's views: mlc status, failed, audit, report, health and metrics."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ops.cli.errors import iso_date


def cmd_status(args: argparse.Namespace) -> int:
    from ops import status, tables
    from pipeline import db
    from pipeline.config import settings

    with db.transaction() as cur:
        data = status.summary(cur, poll_interval=settings().poll_interval,
                              broker_url=settings().broker_url)
    text = status.render(data)  # holds an invoice number and vendor id: escaped per line
    tables.emit(tables.to_json(data) if args.json else
                "\n".join(map(tables.safe, text.split("\n"))))
    return 0


FAILED_COLUMNS = ("vendor_id", "invoice_number", "status", "attempts", "last_try", "reason")


REJECTION_COLUMNS = ("file", "lines", "vendor_id", "invoice_number", "field", "reason")


def cmd_failed(args: argparse.Namespace) -> int:
    from ops import reports, tables
    from pipeline import db

    with db.transaction() as cur:
        invoices, rejected = reports.failed(cur), reports.rejections(cur)
    if args.json:
        tables.emit(tables.to_json({"invoices": invoices, "rejected_rows": rejected}))
        return 0
    parts = []
    if invoices:
        parts.append("Invoices failed or needing review:\n"
                     + tables.table(invoices, FAILED_COLUMNS))
    if rejected:
        parts.append("Rows rejected at parse:\n" + tables.table(rejected, REJECTION_COLUMNS))
    tables.emit("\n\n".join(parts) if parts else "nothing failed")
    return 0


TRAIL_COLUMNS = ("at", "stage", "outcome", "task_id", "attempt", "summary")


CALL_COLUMNS = ("started_at", "call", "try", "duration_ms", "outcome", "http_status", "error")


def cmd_audit(args: argparse.Namespace) -> int:
    from ops import reports, tables
    from pipeline import db, ledger
    from pipeline.x3 import attempts

    with db.transaction() as cur:
        if args.what == "invoice":
            if len(args.key) != 2:
                raise SystemExit("mlc: audit invoice needs VENDOR_ID INVOICE_NUMBER")
            inv = ledger.find_invoice(cur, *args.key)
            if inv is None:
                print(tables.safe(f"no invoice {args.key[1]} of vendor {args.key[0]}"),
                      file=sys.stderr)
                return 1
            events = reports.trail(cur, invoice_id=inv["id"])
            calls = attempts.for_invoice(cur, inv["id"])
            title = (f"invoice {inv['payload']['invoice_number']} of vendor "
                     f"{inv['payload']['vendor_id']}: {inv['status']}"
                     + (f" as {inv['x3_document_number']}" if inv["x3_document_number"] else ""))
        else:
            files = ledger.find_files(cur, args.key[0])
            if not files:
                print(tables.safe(f"no file named {args.key[0]}"), file=sys.stderr)
                return 1
            events = reports.trail(cur, file_ids=[f["id"] for f in files])
            calls = []
            title = "; ".join(f"{f['path']}: {f['status']}" for f in files)
    if args.json:
        tables.emit(tables.to_json({"subject": title, "events": events, "x3_calls": calls}))
    else:
        text = tables.safe(title) + "\n" + tables.table(events, TRAIL_COLUMNS)
        if calls:
            text += "\n\nX3 calls\n" + tables.table(calls, CALL_COLUMNS)
        tables.emit(text)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ops import reports, tables
    from pipeline import db

    since = args.since
    with db.transaction() as cur:
        rows = reports.reconciliation(cur, since)
    if args.format == "json":
        tables.emit(tables.to_json(rows))
    elif args.format == "csv":
        sys.stdout.write(tables.to_csv(rows, reports.REPORT_COLUMNS))
    else:
        from ops import report_view

        tables.emit(report_view.render(rows, reports.REPORT_COLUMNS, wide=args.wide,
                                       since=since))
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    from ops import health, tables
    from pipeline.config import settings

    settings()  # invalid settings are one line and exit 2, not five DOWN checks
    names = health.LOCAL if args.local else tuple(health.CHECKS)
    results = health.run(names)
    if args.beat_schedule:
        results.append(health.beat_schedule(args.beat_schedule))
    if args.json:
        print(tables.to_json([r.__dict__ for r in results]))
    else:
        for r in results:
            print(f"{'ok  ' if r.ok else 'DOWN'} {r.name:<10} {r.detail}")
    down = [r.name for r in results if not r.ok]
    if down:
        print(f"mlc: down: {', '.join(down)}", file=sys.stderr)
        return 1
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from ops import metrics

    if args.serve:
        print(f"metrics on http://{args.host}:{args.port}/metrics", flush=True)
        metrics.serve(args.port, args.host)
        return 0
    sys.stdout.write(metrics.exposition().decode())
    return 0


def register(sub: Any) -> None:
    st = sub.add_parser("status", help="files, invoices, vendors, last poll")
    st.add_argument("--json", action="store_true", help="JSON instead of text")
    st.set_defaults(func=cmd_status)
    fl = sub.add_parser("failed", help="failed / needs-review invoices and rejected rows")
    fl.add_argument("--json", action="store_true", help="JSON instead of tables")
    fl.set_defaults(func=cmd_failed)
    au = sub.add_parser("audit", help="the chronological trail of an invoice or a file")
    au.add_argument("what", choices=["invoice", "file"], help="an invoice or a file")
    au.add_argument("key", nargs="+", help="VENDOR_ID INVOICE_NUMBER, or a file NAME")
    au.add_argument("--json", action="store_true", help="JSON instead of tables")
    au.set_defaults(func=cmd_audit)
    rep = sub.add_parser("report", help="reconciliation per file: received, posted, failed")
    rep.add_argument("--since", required=True, type=iso_date,
                     help="files fetched on or after this day, YYYY-MM-DD")
    rep.add_argument("--format", choices=["table", "csv", "json"], default="table",
                     help="table (default, for people), csv or json (every column)")
    rep.add_argument("--wide", action="store_true",
                     help="table: every column and full file paths (the default fits 100 "
                          "columns)")
    rep.set_defaults(func=cmd_report)

    hp = sub.add_parser("health", help="check Postgres, Redis, migrations, SFTP and X3")
    hp.add_argument("--local", action="store_true",
                    help="only what this container needs: Postgres, migrations, Redis")
    hp.add_argument("--json", action="store_true", help="JSON instead of text")
    hp.add_argument("--beat-schedule", metavar="PATH",
                    help="also check that beat rewrote its schedule file (celery beat "
                         "--schedule=PATH) within two poll intervals: beat's healthcheck")
    hp.set_defaults(func=cmd_health)

    mt = sub.add_parser("metrics", help="Prometheus metrics of files and invoices")
    mt.add_argument("--serve", action="store_true", help="serve /metrics instead of printing")
    mt.add_argument("--host", default="127.0.0.1",
                    help="with --serve: address to listen on (default 127.0.0.1)")
    mt.add_argument("--port", type=int, default=9808,
                    help="with --serve: port to listen on (default 9808)")
    mt.set_defaults(func=cmd_metrics)
