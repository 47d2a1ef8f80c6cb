"""The whole pipeline in this process, without Celery: for `mlc run-once` and for tests.

Same functions the tasks call, in the same order; transient X3 errors propagate to the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline import ledger, posting, prefetch, vendors
from pipeline.audit import TaskContext
from pipeline.stampli import poll
from pipeline.states import InvoiceStatus
from pipeline.x3.client import X3Client
from pipeline.x3.errors import X3CreateInFlight, X3Error

CLI_CTX = TaskContext(task_id="run-once", attempt=1)


@dataclass
class RunReport:
    files: list[int] = field(default_factory=list)
    outcomes: dict[int, str] = field(default_factory=dict)
    waiting_files: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    poll_error: str | None = None  # the export could not be read (host key refused, ...)
    locked_out: bool = False  # another poll was running: nothing fetched by this one


class ProgressLine(Protocol):
    """Where a long run says how far it got (the CLI's terminal line, ops.progress)."""

    def update(self, text: str, *, force: bool = False) -> None: ...


def process_invoice(invoice_id: int, client: X3Client, ctx: TaskContext = CLI_CTX) -> str:
    try:
        code = vendors.resolve(ctx, invoice_id, client)
        if code is None:
            return "skipped"
        return posting.post(ctx, invoice_id, client).status
    except posting.InvoiceRejectedByValidation:
        return InvoiceStatus.FAILED
    except X3CreateInFlight:
        # Looked up again by the next run, created only after the window.
        return InvoiceStatus.OUTCOME_UNKNOWN
    except X3Error as exc:
        # No retries here: the row says why; an unknown outcome stays outcome_unknown.
        return posting.fail(ctx, invoice_id, f"{type(exc).__name__}: {exc}") or InvoiceStatus.FAILED


def process_file(file_id: int, client: X3Client, ctx: TaskContext = CLI_CTX,
                 on_invoice: Callable[[int, int], None] | None = None) -> dict[int, str]:
    """Parse one file and process its invoices; on_invoice(done, total) after each."""
    outcome = ledger.parse_file(ctx, file_id)
    prefetch.prefetch_codes(outcome.invoice_ids, client)
    done: dict[int, str] = {}
    for i in outcome.invoice_ids:
        done[i] = process_invoice(i, client, ctx)
        if on_invoice:
            on_invoice(len(done), len(outcome.invoice_ids))
    return done


def run_once(client: X3Client, ctx: TaskContext = CLI_CTX,
             progress: ProgressLine | None = None) -> RunReport:
    if progress:
        progress.update("polling the export", force=True)
    result = poll.poll(ctx)
    report = RunReport(files=list(result.new_file_ids), waiting_files=result.waiting_files,
                       error=result.error, poll_error=result.error,
                       locked_out=result.locked_out)
    n = len(result.new_file_ids)
    for k, file_id in enumerate(result.new_file_ids, start=1):
        def shown(done: int, total: int, k: int = k) -> None:
            if progress:
                progress.update(f"file {k}/{n}: invoice {done}/{total}", force=done == total)

        if progress:
            progress.update(f"file {k}/{n}: parsing", force=True)
        report.outcomes.update(process_file(file_id, client, ctx, shown))
    return report
