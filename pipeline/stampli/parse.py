"""Parse Stampli export files into normalised invoices and vendors, rejecting per invoice.

A bad row rejects its invoice (with file, line numbers, field and reason); the other invoices of
the file go on.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Any

from marshmallow import EXCLUDE, ValidationError

from pipeline.stampli.schema import (
    INVOICE_HEADER_FIELDS,
    InvoiceRowSchema,
    Layout,
    VendorRowSchema,
)

APPROVED = "approved"
CANCELLED = "cancelled"


class FileUnreadable(Exception):
    """The file as a whole cannot be parsed (encoding, no header, missing columns)."""


@dataclass(frozen=True)
class Rejection:
    vendor_id: str | None
    invoice_number: str | None
    line_numbers: tuple[int, ...]
    field: str | None
    reason: str


@dataclass
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
        return _jsonable({**self.header, "lines": self.lines})


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
    return vendor_id.strip().casefold(), invoice_number.strip().casefold()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


# -- reading rows -----------------------------------------------------------------------------
def read_csv_rows(stream: IO[bytes], layout: Layout) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (first physical line of the record, {our field: trimmed non-empty value})."""
    text = io.TextIOWrapper(stream, encoding=layout.encoding, newline="")
    reader = csv.reader(text, delimiter=layout.delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise FileUnreadable("the file is empty: no header row") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise FileUnreadable(f"header row unreadable: {exc}") from None
    columns = [layout.field_for(h) for h in header]
    if not any(columns):
        raise FileUnreadable("no known column in the header row (wrong delimiter or layout?)")
    line = reader.line_num + 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise FileUnreadable(f"not valid {layout.encoding} near line {line}: {exc}") from None
        except csv.Error as exc:
            raise FileUnreadable(f"CSV syntax error at line {line}: {exc}") from None
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in record):
            continue
        row = {col: cell.strip() for col, cell in zip(columns, record, strict=False)
               if col and cell.strip() != ""}
        if len(record) > len(columns) and any(c.strip() for c in record[len(columns):]):
            row["__extra__"] = "more cells than header columns"
        yield start, row


def _missing_columns(first: dict[str, str] | None, required: Iterable[str]) -> None:
    del first, required  # required fields are checked per row, where the line number is known


# -- invoices ---------------------------------------------------------------------------------
def parse_invoices(rows: Iterable[tuple[int, dict[str, str]]], layout: Layout) -> InvoiceFileResult:
    schema = InvoiceRowSchema(layout, unknown=EXCLUDE)
    groups: dict[tuple[str, str], list[tuple[int, dict[str, Any] | None, dict[str, str]]]] = {}
    result = InvoiceFileResult()
    for line_no, raw in rows:
        result.rows += 1
        vendor, number = raw.get("vendor_id"), raw.get("invoice_number")
        if not vendor or not number:
            missing = "vendor_id" if not vendor else "invoice_number"
            result.rejections.append(Rejection(vendor, number, (line_no,), missing,
                                               f"line {line_no}: {missing} is required"))
            continue
        groups.setdefault(dedup_key(vendor, number), []).append((line_no, None, raw))
    for rows_of_invoice in groups.values():
        outcome = _build_invoice(schema, rows_of_invoice)
        if isinstance(outcome, Rejection):
            result.rejections.append(outcome)
        else:
            result.invoices.append(outcome)
    return result


def _build_invoice(schema: InvoiceRowSchema, rows: list[tuple[int, Any, dict[str, str]]]
                   ) -> ParsedInvoice | Rejection:
    first_raw = rows[0][2]
    vendor, number = first_raw["vendor_id"], first_raw["invoice_number"]
    all_lines = tuple(n for n, _, _ in rows)

    def reject(field_name: str | None, reason: str, lines: tuple[int, ...] = all_lines
               ) -> Rejection:
        where = ", ".join(str(n) for n in lines)
        return Rejection(vendor, number, lines, field_name,
                         f"invoice {number} of vendor {vendor} (line {where}): {reason}")

    loaded: list[tuple[int, dict[str, Any]]] = []
    for line_no, _, raw in rows:
        if "__extra__" in raw:
            return reject(None, "more cells than header columns", (line_no,))
        try:
            loaded.append((line_no, schema.load(raw)))
        except ValidationError as exc:
            name, messages = sorted(exc.messages.items())[0]
            text = messages[0] if isinstance(messages, list) else str(messages)
            return reject(name, f"{name}: {text}", (line_no,))

    header = {name: loaded[0][1].get(name) for name in INVOICE_HEADER_FIELDS}
    for name in INVOICE_HEADER_FIELDS:
        differing = tuple(n for n, row in loaded if row.get(name) != header[name])
        if differing:
            return reject(name, f"header field {name} disagrees across rows "
                                f"(line {', '.join(map(str, differing))} differ from line "
                                f"{loaded[0][0]})")

    status = header["approval_status"].casefold()
    if status not in (APPROVED, CANCELLED):
        return reject("approval_status",
                      f"approval_status is {header['approval_status']!r}; only Approved is posted")

    seen: dict[int, int] = {}
    lines: list[dict[str, Any]] = []
    for line_no, row in loaded:
        n = row["line_number"]
        if n in seen:
            return reject("line_number", f"line_number {n} appears twice", (seen[n], line_no))
        seen[n] = line_no
        lines.append({
            "line_number": n, "description": row.get("line_description") or "",
            "quantity": row["line_quantity"], "amount": row["line_amount"],
            "gl_account": row["gl_account"], "cost_center": row.get("cost_center"),
            "location": row.get("location"),
        })
    lines.sort(key=lambda line: line["line_number"])

    total, tax = header["invoice_total"], header["tax_amount"]
    line_sum = sum((line["amount"] for line in lines), Decimal("0"))
    if line_sum + tax != total:
        return reject("invoice_total",
                      f"amounts do not reconcile: lines {line_sum} + tax {tax} = "
                      f"{line_sum + tax}, header total is {total}")

    header["posting_date"] = header["posting_date"] or header["invoice_date"]
    header["document_type"] = "credit_note" if total < 0 else "invoice"
    header["invoice_number"] = header["invoice_number"].strip()
    return ParsedInvoice(header=header, lines=lines, source_lines=all_lines)


# -- vendors ----------------------------------------------------------------------------------
def parse_vendors(rows: Iterable[tuple[int, dict[str, str]]], layout: Layout) -> VendorFileResult:
    schema = VendorRowSchema(layout, unknown=EXCLUDE)
    result = VendorFileResult()
    for line_no, raw in rows:
        result.rows += 1
        try:
            vendor = schema.load(raw)
        except ValidationError as exc:
            name, messages = sorted(exc.messages.items())[0]
            text = messages[0] if isinstance(messages, list) else str(messages)
            result.rejections.append(Rejection(raw.get("vendor_id"), None, (line_no,), name,
                                               f"vendor at line {line_no}: {name}: {text}"))
            continue
        vendor["line"] = line_no
        result.vendors.append(vendor)
    return result
