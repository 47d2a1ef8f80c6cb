"""The whole pipeline in this process, without Celery: for `mlc run-once` and for tests.

Same functions the tasks call, in the same order; transient X3 errors propagate to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline import ledger, posting, vendors
from pipeline.audit import TaskContext
from pipeline.stampli import poll
from pipeline.x3.client import X3Client

CLI_CTX = TaskContext(task_id="run-once", attempt=1)


@dataclass
class RunReport:
    files: list[int] = field(default_factory=list)
    outcomes: dict[int, str] = field(default_factory=dict)
    poll_error: str | None = None  # the export could not be read (host key refused, ...)
    locked_out: bool = False  # another poll was running: nothing fetched by this one


def process_invoice(invoice_id: int, client: X3Client, ctx: TaskContext = CLI_CTX) -> str:
    try:
        code = vendors.resolve(ctx, invoice_id, client)
        if code is None:
            return "skipped"
        return posting.post(ctx, invoice_id, client).status
    except posting.InvoiceRejectedByValidation:
        return "failed"


def process_file(file_id: int, client: X3Client, ctx: TaskContext = CLI_CTX) -> dict[int, str]:
    outcome = ledger.parse_file(ctx, file_id)
    return {i: process_invoice(i, client, ctx) for i in outcome.invoice_ids}


def run_once(client: X3Client, ctx: TaskContext = CLI_CTX) -> RunReport:
    result = poll.poll(ctx)
    report = RunReport(files=list(result.new_file_ids), poll_error=result.error,
                       locked_out=result.locked_out)
    for file_id in result.new_file_ids:
        report.outcomes.update(process_file(file_id, client, ctx))
    return report
