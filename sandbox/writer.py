"""Write invoices and vendors the way Stampli exports them (CSV or XML, per layout).

Stampli has no sandbox open to third parties, so generated files are how we test before go-live:
the round-trip tests, the benchmark and sample generation all write through here, and the parser
must read back exactly what was written.

Invoices are given in the normalised shape `ParsedInvoice.payload()` returns (header fields plus
"lines" with line_number, description, quantity, amount, gl_account, cost_center, location;
amounts as Decimal or str, dates as date or ISO str; "dimensions" {X3 type: value} are written to
the layout's dimension columns).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import IO, Any
from xml.sax.saxutils import escape, quoteattr

from pipeline.stampli.layout import (
    INVOICE_HEADER_FIELDS,
    INVOICE_LINE_FIELDS,
    LINE_KEYS,
    VENDOR_FIELDS,
    Layout,
)

INVOICE_COLUMNS = (*INVOICE_HEADER_FIELDS, *INVOICE_LINE_FIELDS)
_AMOUNTS = {"invoice_total", "tax_amount", "line_quantity", "line_amount"}
_DATES = {"invoice_date", "due_date", "posting_date", "approved_date"}


def format_amount(value: Decimal | str, layout: Layout, grouped: bool = False) -> str:
    """A Decimal as the layout writes it: decimal separator, optional thousands grouping."""
    text = str(Decimal(str(value)))
    sign, text = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, _, fraction = text.partition(".")
    if grouped and layout.thousands_separator:
        head = len(whole) % 3 or 3
        whole = layout.thousands_separator.join(
            [whole[:head], *(whole[i:i + 3] for i in range(head, len(whole), 3))])
    return sign + whole + (layout.decimal_separator + fraction if fraction else "")


def format_date(value: date | str, layout: Layout) -> str:
    day = date.fromisoformat(value) if isinstance(value, str) else value
    return day.strftime(layout.date_formats[0])


def _cell(name: str, value: Any, layout: Layout, grouped: bool) -> str:
    if value is None or value == "":
        return ""
    if name in _AMOUNTS:
        return format_amount(value, layout, grouped)
    if name in _DATES:
        return format_date(value, layout)
    return str(value)


def invoice_columns(layout: Layout) -> tuple[str, ...]:
    """Every column: ours, then the layout's dimension columns not among them."""
    return (*INVOICE_COLUMNS,
            *(n for n, _ in layout.dimensions if n not in INVOICE_COLUMNS))


def _line_cells(line: Mapping[str, Any], layout: Layout, grouped: bool) -> dict[str, str]:
    cells = {n: _cell(n, line.get(ours), layout, grouped) for n, ours in LINE_KEYS.items()}
    dimensions = line.get("dimensions") or {}
    for name, dim_type in layout.dimensions:  # a re-typed cost_center is written from here
        cells[name] = _cell(name, dimensions.get(dim_type), layout, grouped)
    return cells


def invoice_rows(invoice: Mapping[str, Any], layout: Layout, grouped: bool = False
                 ) -> Iterable[dict[str, str]]:
    """One flat row per line: the header fields repeated, as the contract's CSV has them."""
    header = {n: _cell(n, invoice.get(n), layout, grouped) for n in INVOICE_HEADER_FIELDS}
    for line in invoice["lines"]:
        yield {**header, **_line_cells(line, layout, grouped)}


def write_invoices_csv(invoices: Iterable[Mapping[str, Any]], stream: IO[str],
                       layout: Layout | None = None, columns: Iterable[str] | None = None,
                       header_names: Mapping[str, str] | None = None,
                       grouped: bool = False) -> int:
    """CSV with RFC 4180 quoting (`csv.QUOTE_MINIMAL`); `header_names` renames columns (a
    customer's aliases). Returns the number of data rows. `stream` is text: open it with the
    layout's encoding and newline=""."""
    layout = layout or Layout()
    columns = list(invoice_columns(layout) if columns is None else columns)
    writer = csv.writer(stream, delimiter=layout.delimiter, lineterminator="\r\n")
    writer.writerow([(header_names or {}).get(c, c) for c in columns])
    rows = 0
    for invoice in invoices:
        for row in invoice_rows(invoice, layout, grouped):
            writer.writerow([row.get(c, "") for c in columns])
            rows += 1
    return rows


def write_invoices_xml(invoices: Iterable[Mapping[str, Any]], stream: IO[bytes],
                       layout: Layout | None = None, grouped: bool = False,
                       encoding: str = "utf-8") -> int:
    """`<StampliExport type="invoices">` with one `<Invoice>` per invoice. Returns the number
    of lines written."""
    layout = layout or Layout()
    stream.write(f'<?xml version="1.0" encoding={quoteattr(encoding)}?>\n'
                 '<StampliExport type="invoices" exportedAt="2026-11-03T10:15:00Z">\n'
                 .encode(encoding))
    count = 0
    for invoice in invoices:
        parts = ["  <Invoice>\n"]
        for name in INVOICE_HEADER_FIELDS:
            parts.append(_element(name, _cell(name, invoice.get(name), layout, grouped), 4))
        parts.append("    <Lines>\n")
        for line in invoice["lines"]:
            parts.append("      <Line>\n")
            for name, text in _line_cells(line, layout, grouped).items():
                parts.append(_element(_element_name(name), text, 8))
            parts.append("      </Line>\n")
            count += 1
        parts.append("    </Lines>\n  </Invoice>\n")
        stream.write("".join(parts).encode(encoding, errors="xmlcharrefreplace"))
    stream.write(b"</StampliExport>\n")
    return count


def write_vendors_csv(vendors: Iterable[Mapping[str, Any]], stream: IO[str],
                      layout: Layout | None = None) -> int:
    layout = layout or Layout()
    writer = csv.writer(stream, delimiter=layout.delimiter, lineterminator="\r\n")
    writer.writerow(VENDOR_FIELDS)
    rows = 0
    for vendor in vendors:
        writer.writerow(["" if vendor.get(n) is None else str(vendor[n]) for n in VENDOR_FIELDS])
        rows += 1
    return rows


def write_vendors_xml(vendors: Iterable[Mapping[str, Any]], stream: IO[bytes]) -> int:
    stream.write(b'<?xml version="1.0" encoding="utf-8"?>\n<StampliExport type="vendors">\n')
    rows = 0
    for vendor in vendors:
        body = "".join(_element(n, "" if vendor.get(n) is None else str(vendor[n]), 4)
                       for n in VENDOR_FIELDS)
        stream.write(f"  <Vendor>\n{body}  </Vendor>\n".encode())
        rows += 1
    stream.write(b"</StampliExport>\n")
    return rows


def _element_name(column: str) -> str:
    """A column name as an XML element name (spaces and other characters an element name cannot
    hold become `_`: header matching ignores `_` and spaces alike)."""
    return re.sub(r"[^\w.-]", "_", column.strip())


def _element(name: str, text: str, indent: int) -> str:
    if text == "":
        return ""
    return f"{' ' * indent}<{name}>{escape(text)}</{name}>\n"


def synthetic_invoices(lines: int, seed: int = 1) -> Iterable[dict[str, Any]]:
    """Plausible approved invoices (1 to 6 lines each) until `lines` lines were produced:
    vendor names with commas, grouped totals, optional fields sometimes empty. Deterministic."""
    import random  # only generators need it

    rnd = random.Random(seed)
    words = ("Hydraulic", "hose", "assemblies", "Freight", "expedited", "M8", "bolts",
             "Printer", "paper", "Consulting", "services", "Maintenance", "contract", "Q4",
             "pallets", "Steel", "brackets", "Safety", "gloves", "Cloud", "subscription")
    vendors = [(f"V-{1000 + i}", rnd.choice((f"Vendor {i} Inc.", f"Vendor {i}, Ltd.",
                                            f"{rnd.choice(words)} Supply {i}")),
                rnd.choice(("", f"94-{rnd.randint(1000000, 9999999)}"))) for i in range(500)]
    produced, n = 0, 0
    while produced < lines:
        n += 1
        count = min(rnd.randint(1, 6), lines - produced)
        vendor_id, vendor_name, tax_id = rnd.choice(vendors)
        amounts = [Decimal(rnd.randint(100, 2_500_000)) / 100 for _ in range(count)]
        tax = Decimal(rnd.randint(0, 50_000)) / 100
        day = date(2026, rnd.randint(1, 12), rnd.randint(1, 28))
        yield {
            "stampli_invoice_id": f"ST-{50000 + n}", "invoice_number": f"INV-{n:07d}",
            "vendor_id": vendor_id, "vendor_name": vendor_name, "vendor_tax_id": tax_id or None,
            "invoice_date": day, "due_date": day.replace(day=28), "posting_date": None,
            "currency": rnd.choice(("USD", "USD", "EUR", "GBP")),
            "invoice_total": sum(amounts, tax), "tax_amount": tax,
            "po_number": rnd.choice(("", f"PO-{rnd.randint(1000, 9999)}")) or None,
            "approval_status": "Approved", "approved_date": day, "approver": "j.doe",
            "lines": [{"line_number": i + 1,
                       "description": " ".join(rnd.sample(words, rnd.randint(2, 5))),
                       "quantity": Decimal(rnd.randint(1, 20)), "amount": amount,
                       "gl_account": rnd.choice(("6100", "6300", "6500")),
                       "cost_center": rnd.choice(("CC-PLANT1", "CC-PLANT2", "CC-ADMIN")),
                       "location": rnd.choice((None, "US011"))}
                      for i, amount in enumerate(amounts)],
        }
        produced += count
