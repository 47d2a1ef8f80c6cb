"""mlc replay: put failed invoices back on the road, from what Postgres holds."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ops.cli.errors import iso_date


def cmd_replay(args: argparse.Namespace) -> int:
    from ops.tables import safe
    from pipeline import replay as replay_mod
    from pipeline.run_once import CLI_CTX

    vendor, number = args.invoice if args.invoice else (None, None)
    sel = replay_mod.Selection(invoice_id=args.id, vendor_id=vendor, invoice_number=number,
                               failed=args.failed, file=args.file,
                               since=args.since)
    from ops.progress import Progress
    from pipeline.config import settings
    from workers.send import broker_ping, send_many

    if not args.dry_run:
        broker_ping(settings().broker_url)  # Redis down: say so before any row is reset
    try:
        chosen = replay_mod.select_for_replay(CLI_CTX, sel, reason=args.reason,
                                              dry_run=args.dry_run)
    except replay_mod.ReplayRefused as exc:
        print(safe(f"mlc: replay refused: {exc}"), file=sys.stderr)
        return 1
    if not args.dry_run and chosen:
        with Progress("replay: enqueued") as progress:
            send_many("mlc.process_invoice", [[row["id"]] for row in chosen],
                      lambda done: progress.count(done, len(chosen), "invoices"))
    verb = "would replay" if args.dry_run else "replaying"
    print(safe(f"{verb} {len(chosen)} invoice(s): {sel.describe()}"))
    for row in chosen:
        print(safe(f"  {row['vendor_id']} {row['invoice_number']} ({row['status']}): "
                   f"{row['last_error'] or ''}"))
    return 0


def register(sub: Any) -> None:
    rp = sub.add_parser("replay", help="re-enqueue failed invoices from what Postgres holds")
    target = rp.add_mutually_exclusive_group(required=True)
    target.add_argument("--invoice", nargs=2, metavar=("VENDOR_ID", "INVOICE_NUMBER"),
                        help="one invoice, by Stampli vendor id and invoice number")
    target.add_argument("--id", type=int, help="the ledger id of one invoice")
    target.add_argument("--failed", action="store_true",
                        help="every failed invoice (not those needing review)")
    target.add_argument("--file", metavar="NAME",
                        help="the unfinished invoices of one export file")
    rp.add_argument("--since", type=iso_date,
                    help="with --failed: failed on or after YYYY-MM-DD")
    rp.add_argument("--reason", help="why, for the audit trail")
    rp.add_argument("--dry-run", action="store_true",
                    help="list what would be replayed; change nothing")
    rp.set_defaults(func=cmd_replay)
