"""The whole pipeline in this process, without Celery: for `mlc run-once` and for tests.

Same functions the tasks call, in the same order; transient X3 errors propagate to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline import ledger, posting, vendors
from pipeline.audit import TaskContext
from pipeline.stampli import poll
from pipeline.x3 import attempts
from pipeline.x3.client import X3Client
from pipeline.x3.errors import X3CreateInFlight, X3Error

CLI_CTX = TaskContext(task_id="run-once", attempt=1)


@dataclass
class RunReport:
    files: list[int] = field(default_factory=list)
    outcomes: dict[int, str] = field(default_factory=dict)
    poll_error: str | None = None  # the export could not be read (host key refused, ...)
    locked_out: bool = False  # another poll was running: nothing fetched by this one


def process_invoice(invoice_id: int, client: X3Client, ctx: TaskContext = CLI_CTX) -> str:
    try:
        with attempts.for_invoice_work(invoice_id, client, ctx.task_id) as recorded:
            code = vendors.resolve(ctx, invoice_id, recorded)
        if code is None:
            return "skipped"
        return posting.post(ctx, invoice_id, client).status
    except posting.InvoiceRejectedByValidation:
        return "failed"
    except X3CreateInFlight:
        return "outcome_unknown"  # looked up again by the next run, created only after the window
    except X3Error as exc:
        # No retries here: the row says why; an unknown outcome stays outcome_unknown.
        return posting.fail(ctx, invoice_id, f"{type(exc).__name__}: {exc}") or "failed"


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
