"""What parsing yields: invoices and vendors as normalised records, rejections with file, lines,
field and reason, and the single-use stream both parsers are."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError

from pipeline.stampli.rows import FileUnreadable, ListRows, NumberedRow, RowSource, normalised_key
from pipeline.stampli.schema import Layout

APPROVED = "approved"
CANCELLED = "cancelled"


@dataclass(frozen=True)
class Rejection:
    vendor_id: str | None
    invoice_number: str | None
    line_numbers: tuple[int, ...]
    field: str | None
    reason: str


@dataclass(slots=True)
class ParsedInvoice:
    header: dict[str, Any]
    lines: list[dict[str, Any]]
    source_lines: tuple[int, ...]

    @property
    def key(self) -> tuple[str, str]:
        return dedup_key(self.header["vendor_id"], self.header["invoice_number"])

    @property
    def cancelled(self) -> bool:
        return self.header["approval_status"].casefold() == CANCELLED

    def payload(self) -> dict[str, Any]:
        """JSON-ready normalised invoice: decimals as strings, dates as ISO strings."""
        return jsonable({**self.header, "lines": self.lines})


@dataclass
class InvoiceFileResult:
    invoices: list[ParsedInvoice] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    rows: int = 0


@dataclass
class VendorFileResult:
    vendors: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    rows: int = 0


def dedup_key(vendor_id: str, invoice_number: str) -> tuple[str, str]:
    """NFKC, stripped, case-folded: `INV-７` and `inv-7` are one invoice."""
    vendor, number = normalised_key((vendor_id, invoice_number))
    return vendor, number


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value



def first_error(exc: ValidationError) -> tuple[str, str]:
    name, messages = sorted(exc.normalized_messages().items())[0]
    text = messages[0] if isinstance(messages, list) else str(messages)
    return name, text



class ParseStream:
    """Single-use iterator over a file's outcomes; `rows` counts data rows seen so far.
    `collect()` gathers everything in lists: for small files and tests."""

    def __init__(self, rows: Iterable[NumberedRow], layout: Layout) -> None:
        # Anything but a RowSource (a list or generator of rows) is kept in memory: only readers
        # can be read twice from their stream.
        self.source = rows if isinstance(rows, RowSource) else ListRows(rows)
        self.layout, self.rows = layout, 0
        self._started = False
        self._collected: Any = None

    def __iter__(self) -> Iterator[Any]:
        if self._started:
            raise RuntimeError("a parse stream can be iterated once")
        self._started = True
        return self._generate()

    def _generate(self) -> Iterator[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_columns(self, schema: Schema, kind: str) -> None:
        columns = self.source.columns
        if columns is None:
            return
        missing = [n for n, f in schema.fields.items() if f.required and n not in columns]
        if missing:
            raise FileUnreadable(f"the header has no column for required field"
                                 f"{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
                                 f" (not a{'n' if kind == 'invoices' else ''} {kind} file,"
                                 " or a layout alias missing?)")
