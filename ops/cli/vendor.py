"""mlc vendor: Stampli vendors and their X3 suppliers."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_vendor_link(args: argparse.Namespace) -> int:
    import getpass

    from pipeline import vendor_links
    from pipeline.run_once import CLI_CTX

    released = vendor_links.link_by_hand(CLI_CTX, args.vendor_id, args.code.strip().upper(),
                                    by=getpass.getuser(), reason=args.reason)
    if released:
        from workers import app

        for invoice_id in released:
            app.send_task("mlc.process_invoice", args=[invoice_id])
    print(f"vendor {args.vendor_id} linked to X3 supplier {args.code.strip().upper()};"
          f" {len(released)} invoice(s) held for review re-queued")
    return 0


def register(sub: Any) -> None:
    vp = sub.add_parser("vendor", help="Stampli vendors and their X3 suppliers").add_subparsers(
        dest="vendor_cmd", required=True)
    vl = vp.add_parser("link", help="link a vendor to an X3 supplier by hand (e.g. after two"
                       " suppliers matched it) and re-queue its invoices held for review")
    vl.add_argument("vendor_id", help="the Stampli vendor id, as in the export")
    vl.add_argument("code", help="the X3 supplier code")
    vl.add_argument("--reason", help="why, for the audit trail")
    vl.set_defaults(func=cmd_vendor_link)
