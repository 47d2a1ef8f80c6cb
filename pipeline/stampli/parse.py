"""Parse Stampli export files into normalised invoices and vendors, rejecting per invoice.

A bad row rejects its invoice (with file, line numbers, field and reason); the other invoices of
the file go on. A file that cannot be read at all raises `FileUnreadable`.

Streaming: `parse_invoices` first counts the rows of every (vendor, invoice) key in a cheap pass,
then streams the rows again and yields each invoice as soon as its last row is seen. Rows of one
invoice are normally contiguous, so only a few invoices are held at a time, and the memory is
one small integer per invoice (the counts), not the file.

One row through `parse_invoices`, line 2 of samples/invoices_20261103101500.csv::

    ST-50001,INV-88121,V-1001,Acme Industrial Supply,2026-11-01,2026-12-01,USD,"1,260.50",60.50,
    PO-4410,1,Hydraulic hose assemblies,10,800.00,6100,CC-PLANT1,Approved,2026-11-02,j.doe

    reader (csvrows.py)    Record(line=2, values=("ST-50001", "INV-88121", "V-1001", ...,
                           "1", "Hydraulic hose assemblies", "10", "800.00", "6100",
                           "CC-PLANT1", ""), error=None)   # text in _InvoiceBuilder.fields order
    InvoiceStream          groups it with the other Records of ("v-1001", "inv-88121"): line 3;
                           the group is built when the count of pass 1 says it is complete
    _InvoiceBuilder.build  loads the header once, from the first Record's values (FastLoader):
                           {"stampli_invoice_id": "ST-50001", "invoice_number": "INV-88121",
                            "vendor_id": "V-1001", "invoice_date": date(2026, 11, 1),
                            "invoice_total": Decimal("1260.50"), "tax_amount": Decimal("60.50"),
                            "approval_status": "Approved", ...}
                           and one line per Record (FastLoader.load_records, which also checks
                           that every Record repeats the first one's header text):
                           {"line_number": 1, "description": "Hydraulic hose assemblies",
                            "quantity": Decimal("10"), "amount": Decimal("800.00"),
                            "gl_account": "6100", "cost_center": "CC-PLANT1", "location": None}
    _finish_invoice        checks across the lines (status, line numbers, totals) and gives
                           ParsedInvoice(header={..., "posting_date": date(2026, 11, 1),
                           "document_type": "invoice"}, lines=[line 1, line 2],
                           source_lines=(2, 3)), or a Rejection naming the lines and the field.

A Record the fast path cannot vouch for (a reader's error, a value marshmallow must word the
problem with) sends its invoice down `_InvoiceBuilder._slow`: `Schema.load` row by row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from operator import attrgetter, itemgetter
from typing import IO, Any

from marshmallow import EXCLUDE, Schema, ValidationError

from pipeline.stampli.csvrows import CsvRows
from pipeline.stampli.fastload import FastLoader, NeedsSchema, as_marshmallow_input
from pipeline.stampli.layout import LINE_KEYS
from pipeline.stampli.rows import (
    FileUnreadable,
    ListRows,
    NumberedRow,
    Record,
    RowError,
    RowSource,
    normalised_key,
    seekable,
    sniff_format,
)
from pipeline.stampli.schema import (
    INVOICE_HEADER_FIELDS,
    INVOICE_LINE_FIELDS,
    VENDOR_FIELDS,
    InvoiceRowSchema,
    Layout,
    VendorRowSchema,
    invoice_row_schema,
)
from pipeline.stampli.xmlrows import XmlRows

__all__ = [
    "FileUnreadable", "InvoiceFileResult", "InvoiceStream", "ParsedInvoice", "Rejection",
    "RowSource", "VendorFileResult", "VendorStream", "dedup_key", "parse_invoices",
    "parse_vendors", "read_csv_rows", "read_rows",
]

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
    """NFKC, stripped, case-folded: `INV-７` and `inv-7` are one invoice."""
    vendor, number = normalised_key((vendor_id, invoice_number))
    return vendor, number


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
def read_rows(filename: str, stream: IO[bytes], layout: Layout) -> RowSource:
    """The rows of one export file, CSV or XML (by extension, else by content)."""
    stream = seekable(stream)
    if sniff_format(filename, stream) == "xml":
        return XmlRows(stream, layout, name=filename)
    return CsvRows(stream, layout, name=filename)


def read_csv_rows(stream: IO[bytes], layout: Layout) -> CsvRows:
    """Rows of a CSV file: (first physical line of the record, {our field: value})."""
    return CsvRows(seekable(stream), layout)


class _Stream:
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


# Records of invoice rows are laid out header fields first, then line fields: the header part
# of a row is one slice, compared at C speed with the invoice's first row.
INVOICE_FIELDS = (*INVOICE_HEADER_FIELDS, *INVOICE_LINE_FIELDS)
_H = len(INVOICE_HEADER_FIELDS)
_VENDOR, _NUMBER = INVOICE_FIELDS.index("vendor_id"), INVOICE_FIELDS.index("invoice_number")
_Group = list[Record]


class InvoiceStream(_Stream):
    """Yields `ParsedInvoice | Rejection` as each invoice completes."""

    def collect(self) -> InvoiceFileResult:
        if self._collected is None:
            result = InvoiceFileResult()
            for item in self:
                (result.rejections if isinstance(item, Rejection) else result.invoices
                 ).append(item)
            result.rows = self.rows
            self._collected = result
        return self._collected

    @property
    def invoices(self) -> list[ParsedInvoice]:
        return self.collect().invoices

    @property
    def rejections(self) -> list[Rejection]:
        return self.collect().rejections

    def _generate(self) -> Iterator[ParsedInvoice | Rejection]:
        source = self.source
        source.expect_kind("invoices")
        schema = invoice_row_schema(self.layout)(self.layout, unknown=EXCLUDE)
        self._check_columns(schema, "invoices")
        remaining = _count_rows_per_invoice(source)
        max_rows = self.layout.limits.max_invoice_lines
        builder = _InvoiceBuilder(schema, self.layout)
        build = builder.build
        open_groups: dict[tuple[str, str], tuple[_Group, int]] = {}
        # The hot loop. Rows of one invoice are normally contiguous: the current group and the
        # count of its rows still to come are kept in locals; the dicts are only touched when
        # the invoice changes. Counts are by hash of the key: two keys sharing one only keep a
        # group open until the end of the file.
        current_key: tuple[str, str] | None = None
        current: _Group = []
        left = 0
        current_text: tuple[str, ...] = ()  # equals no row's (vendor, number)
        key_text = itemgetter(_VENDOR, _NUMBER)
        rows = 0
        for record in source.records(builder.fields):
            rows += 1
            text = key_text(record.values)  # (vendor_id, invoice_number) as the file has them
            if text != current_text:
                if not text[0] or not text[1]:
                    line_no = record.line
                    missing = "vendor_id" if not text[0] else "invoice_number"
                    self.rows = rows
                    if record.error is not None:  # what the reader found (a row over a cap)
                        missing, reason = record.error
                    else:
                        reason = f"{missing} is required"
                    yield Rejection(text[0] or None, text[1] or None, (line_no,), missing,
                                    f"line {line_no}: {reason}")
                    continue
                current_text = text
                key = ((text[0].casefold(), text[1].casefold())  # = normalised_key: stripped
                       if text[0].isascii() and text[1].isascii() else normalised_key(text))
                if key != current_key:
                    if current_key is not None:  # interleaved invoices: park the open one
                        open_groups[current_key] = (current, left)
                    current_key = key
                    found = open_groups.pop(key, None)
                    if found is not None:
                        current, left = found
                    else:
                        current, left = [], remaining.pop(hash(key), -1)
                        if left > max_rows:  # refused whole, its rows never held
                            self.rows = rows
                            yield _too_many_rows(record, left, max_rows)
                            current, left = _SKIP, -1
            current.append(record)
            left -= 1
            if left == 0:  # negative: a key pass 1 did not see (cannot happen); held to the end
                self.rows = rows
                yield build(current)
                current_key, current, current_text = None, [], ()
        self.rows = rows
        if current_key is not None:
            open_groups[current_key] = (current, left)
        for group, _ in open_groups.values():
            if group is not _SKIP:
                yield build(group)


class _Skip(list):  # type: ignore[type-arg]
    """The group of a refused invoice: takes its rows and keeps none."""

    def append(self, record: object) -> None:
        pass


_SKIP = _Skip()


def _too_many_rows(record: Record, count: int, limit: int) -> Rejection:
    vendor, number = record.values[_VENDOR], record.values[_NUMBER]
    return Rejection(vendor, number, (record.line,), None,
                     f"invoice {number} of vendor {vendor} (line {record.line}): {count} rows,"
                     f" more than the {limit} allowed (MLC_MAX_INVOICE_LINES)")


def _count_rows_per_invoice(source: RowSource) -> dict[int, int]:
    """Pass 1: rows per invoice key (by hash: an int per invoice, not the key)."""
    return source.count_keys(("vendor_id", "invoice_number"))


_ZERO = Decimal("0")
_LINE_OF = attrgetter("line")  # of a Record
_LINE_NUMBER, _AMOUNT = itemgetter("line_number"), itemgetter("amount")
_DESCRIPTION = itemgetter("description")


class _InvoiceBuilder:
    """One invoice from its rows: the fast path when every row loads cleanly and repeats the
    first row's header text; otherwise the full marshmallow path, which finds and words the
    problem exactly."""

    def __init__(self, schema: InvoiceRowSchema, layout: Layout) -> None:
        self.schema = schema
        self.allow_zero = layout.limits.allow_zero_invoices
        # Records: INVOICE_FIELDS, then the layout's dimension columns that are not among them.
        columns = [name for name, _ in layout.dimensions]
        self.fields = (*INVOICE_FIELDS, *(n for n in columns if n not in INVOICE_FIELDS))
        # A line field re-typed as a dimension (cost_center) feeds `dimensions`, not its key.
        self.cleared = tuple(LINE_KEYS[n] for n in columns if n in LINE_KEYS)
        # Loaded under a temporary key, then gathered into the line's `dimensions`.
        self.dimensions = tuple((f"dimension {t}", t) for _, t in layout.dimensions)
        self.line_keys = {**{k: v for k, v in LINE_KEYS.items() if k not in columns},
                          **dict(zip(columns, (k for k, _ in self.dimensions), strict=True))}
        self.header_loader = FastLoader(schema, self.fields, INVOICE_HEADER_FIELDS).load
        self.load_lines = FastLoader(schema, self.fields, self.line_keys,
                                     rename=self.line_keys).load_records

    def build(self, rows: _Group) -> ParsedInvoice | Rejection:
        first = rows[0].values
        try:
            # Every row must repeat the first row's header text: then one header load is enough.
            header, lines = self.header_loader(first), self.load_lines(rows, first[:_H])
        except NeedsSchema:
            outcome = self._slow(rows)
            if isinstance(outcome, Rejection):
                return outcome
            header, lines = outcome
        if self.dimensions:
            self._gather_dimensions(lines)
        return _finish_invoice(rows, header, lines, self.allow_zero)

    def _gather_dimensions(self, lines: list[dict[str, Any]]) -> None:
        """{"PRJ": "P-100", ...} from the temporary keys; no `dimensions` key when empty."""
        for line in lines:
            found = {}
            for key, dim_type in self.dimensions:
                value = line.pop(key)
                if value is not None:
                    found[dim_type] = value
            if found:
                line["dimensions"] = found
            for key in self.cleared:
                line[key] = None

    def _slow(self, rows: _Group) -> Rejection | tuple[dict[str, Any], list[dict[str, Any]]]:
        reject = _rejecter(rows)
        loaded: list[tuple[int, dict[str, Any]]] = []
        for line_no, values, error in rows:
            if error is not None:
                name, reason = error
                return reject(name, f"{name}: {reason}" if name else reason, (line_no,))
            try:
                loaded.append((line_no, self.schema.load(
                    as_marshmallow_input(self.fields, values))))
            except ValidationError as exc:
                name, text = _first_error(exc)
                return reject(name, f"{name}: {text}", (line_no,))
        first_line, first_row = loaded[0]
        header = {name: first_row.get(name) for name in INVOICE_HEADER_FIELDS}
        for name in INVOICE_HEADER_FIELDS:
            differing = tuple(n for n, row in loaded if row.get(name) != header[name])
            if differing:
                return reject(name, f"header field {name} disagrees across rows "
                                    f"(line {', '.join(map(str, differing))} differ from line "
                                    f"{first_line})")
        lines = [{ours: row.get(theirs) for theirs, ours in self.line_keys.items()}
                 for _, row in loaded]
        return header, lines


def _first_error(exc: ValidationError) -> tuple[str, str]:
    name, messages = sorted(exc.normalized_messages().items())[0]
    text = messages[0] if isinstance(messages, list) else str(messages)
    return name, text


def _rejecter(rows: _Group) -> Any:
    first = rows[0].values
    vendor, number = first[_VENDOR], first[_NUMBER]
    all_lines = tuple(map(_LINE_OF, rows))

    def reject(field_name: str | None, reason: str, lines: tuple[int, ...] = all_lines
               ) -> Rejection:
        where = ", ".join(str(n) for n in lines)
        return Rejection(vendor, number, lines, field_name,
                         f"invoice {number} of vendor {vendor} (line {where}): {reason}")
    return reject


_TOTAL = INVOICE_FIELDS.index("invoice_total")
_ZERO_INVOICE = ("a zero total is refused as a zero invoice (MLC_ALLOW_ZERO_INVOICES=1 accepts"
                 " it)")


def _finish_invoice(rows: _Group, header: dict[str, Any], lines: list[dict[str, Any]],
                    allow_zero: bool = False) -> ParsedInvoice | Rejection:
    """Checks across the rows of one invoice (`lines` in row order): status, line numbers,
    totals. Runs for every invoice, so the common case is kept to a few C-level calls."""
    status = header["approval_status"].casefold()
    if status != APPROVED and status != CANCELLED:
        return _rejecter(rows)("approval_status", f"approval_status is"
                               f" {header['approval_status']!r}; only Approved is posted")

    numbers = list(map(_LINE_NUMBER, lines))
    in_order = len(numbers) == 1 or numbers == sorted(set(numbers))  # so also unique
    if not in_order and len(set(numbers)) < len(numbers):
        seen: dict[int, int] = {}
        for record, n in zip(rows, numbers, strict=True):
            if n in seen:
                return _rejecter(rows)("line_number", f"line_number {n} appears twice",
                                       (seen[n], record.line))
            seen[n] = record.line

    total, tax = header["invoice_total"], header["tax_amount"]
    if not total and not allow_zero:  # -0.00 too: it loaded as 0.00
        return _rejecter(rows)("invoice_total",
                               f"invoice_total: {rows[0].values[_TOTAL]}: {_ZERO_INVOICE}")
    line_sum = sum(map(_AMOUNT, lines), _ZERO)
    if line_sum + tax != total:
        return _rejecter(rows)("invoice_total",
                               f"amounts do not reconcile: lines {line_sum} + tax {tax} = "
                               f"{line_sum + tax}, header total is {total}")

    if None in map(_DESCRIPTION, lines):
        for line in lines:
            if line["description"] is None:
                line["description"] = ""
    if not in_order:
        lines.sort(key=_LINE_NUMBER)
    header["posting_date"] = header["posting_date"] or header["invoice_date"]
    header["document_type"] = "credit_note" if total < 0 else "invoice"
    return ParsedInvoice(header=header, lines=lines, source_lines=tuple(map(_LINE_OF, rows)))


# -- vendors ----------------------------------------------------------------------------------
class VendorStream(_Stream):
    """Yields a vendor dict (with its source "line") or a `Rejection` per row."""

    def collect(self) -> VendorFileResult:
        if self._collected is None:
            result = VendorFileResult()
            for item in self:
                (result.rejections if isinstance(item, Rejection) else result.vendors
                 ).append(item)
            result.rows = self.rows
            self._collected = result
        return self._collected

    @property
    def vendors(self) -> list[dict[str, Any]]:
        return self.collect().vendors

    @property
    def rejections(self) -> list[Rejection]:
        return self.collect().rejections

    def _generate(self) -> Iterator[dict[str, Any] | Rejection]:
        self.source.expect_kind("vendors")
        schema = VendorRowSchema(self.layout, unknown=EXCLUDE)
        self._check_columns(schema, "vendors")
        load = FastLoader(schema, VENDOR_FIELDS).load
        for line_no, values, error in self.source.records(VENDOR_FIELDS):
            self.rows += 1
            try:
                if error is not None:
                    raise NeedsSchema
                vendor = load(values)
            except NeedsSchema:
                outcome = _vendor_slow(schema, line_no, values, error)
                if isinstance(outcome, Rejection):
                    yield outcome
                    continue
                vendor = outcome
            vendor["line"] = line_no
            yield vendor


def _vendor_slow(schema: Schema, line_no: int, values: tuple[str, ...], error: RowError | None
                 ) -> Rejection | dict[str, Any]:
    vendor_id = values[0] or None  # VENDOR_FIELDS starts with vendor_id
    if error is not None:
        name, reason = error
        return Rejection(vendor_id, None, (line_no,), name,
                         f"vendor at line {line_no}: {f'{name}: {reason}' if name else reason}")
    try:
        return schema.load(as_marshmallow_input(VENDOR_FIELDS, values))
    except ValidationError as exc:
        name, text = _first_error(exc)
        return Rejection(vendor_id, None, (line_no,), name,
                         f"vendor at line {line_no}: {name}: {text}")


def parse_invoices(rows: Iterable[NumberedRow], layout: Layout) -> InvoiceStream:
    """Invoices of a file, as they complete: iterate for `ParsedInvoice | Rejection`."""
    return InvoiceStream(rows, layout)


def parse_vendors(rows: Iterable[NumberedRow], layout: Layout) -> VendorStream:
    """Vendors of a file, row by row: iterate for `dict | Rejection`."""
    return VendorStream(rows, layout)
