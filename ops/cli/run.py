"""mlc poll and mlc run-once: a fetch queued for the workers, or a whole run in this process."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any


def cmd_poll(args: argparse.Namespace) -> int:
    from workers.send import send

    print(f"poll queued: task {send('mlc.fetch_exports')}")
    return 0


def cmd_run_once(args: argparse.Namespace) -> int:
    from ops.progress import Progress
    from ops.status import render_waiting
    from ops.tables import safe
    from pipeline import db
    from pipeline.run_once import run_once
    from pipeline.x3.connect import open_client

    with db.transaction() as cur:
        client = open_client(cur)
    with Progress("run-once") as progress:
        report = run_once(client, progress=progress)
    if report.locked_out:
        print("another poll is running: nothing fetched by this one")
    print(f"files fetched: {len(report.files)}")
    for invoice_id, outcome in sorted(report.outcomes.items()):
        print(f"  invoice {invoice_id}: {outcome}")
    counts = Counter(report.outcomes.values())
    print(f"invoices: {len(report.outcomes)}"
          + "".join(f", {n} {state}" for state, n in sorted(counts.items())))
    for line in render_waiting(report.waiting_files):
        print(safe(line))
    if report.poll_error:  # a refused host key, refused credentials, an unreachable server
        print(f"mlc: run-once: the export could not be polled: {safe(report.poll_error)}",
              file=sys.stderr)
        return 1
    return 0


def register(sub: Any) -> None:
    sub.add_parser("poll", help="queue one fetch now").set_defaults(func=cmd_poll)
    sub.add_parser("run-once", help="poll and process in this process, without Celery"
                   ).set_defaults(func=cmd_run_once)
