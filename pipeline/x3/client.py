"""The one interface both X3 transports implement, and the records that cross it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True)
class Supplier:
    code: str
    name: str
    tax_id: str | None = None  # registration number (CRN), else the EU VAT id
    eu_vat_id: str | None = None  # EECNUM / europeanUnionVatNumber


@dataclass(frozen=True)
class NewSupplier:
    code: str | None  # None: X3 numbers the supplier itself (sequence numbering)
    name: str
    tax_id: str | None
    eu_vat_id: str | None
    currency: str | None
    address_lines: tuple[str, ...] = ()
    postal_code: str | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None


@dataclass(frozen=True)
class NewInvoiceLine:
    line_number: int
    account: str
    amount: Decimal
    quantity: Decimal
    description: str
    dimensions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class NewInvoice:
    supplier_code: str
    document_number: str
    document_date: date
    accounting_date: date
    due_date: date | None
    invoice_type: str
    is_credit_note: bool
    currency: str
    company: str
    site: str
    total_including_tax: Decimal
    total_excluding_tax: Decimal
    description: str
    lines: tuple[NewInvoiceLine, ...] = field(default_factory=tuple)


class X3Client(Protocol):
    scope: str  # one X3 endpoint and folder: what caches of its answers are keyed by

    def find_supplier_by_tax_id(self, tax_id: str) -> Supplier | None: ...
    def find_supplier_by_code(self, code: str) -> Supplier | None: ...
    def find_suppliers(self, *, tax_ids: Sequence[str] = (), codes: Sequence[str] = (),
                       names: Sequence[str] = ()) -> list[Supplier]: ...
    def create_supplier(self, supplier: NewSupplier) -> Supplier: ...
    def account_exists(self, chart: str, account: str) -> bool: ...
    def dimension_exists(self, dimension_type: str, value: str) -> bool: ...
    def known_accounts(self, chart: str, accounts: Iterable[str]) -> set[str]: ...
    def known_dimensions(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]: ...
    def find_invoice(self, supplier_code: str, document_number: str) -> str | None: ...
    def create_invoice(self, invoice: NewInvoice) -> str: ...
    def close(self) -> None: ...


LOOKUP_BATCH = 40  # codes per validation query: a short URL or filter, one page of answers


def batches(values: Iterable[str], size: int = LOOKUP_BATCH) -> Iterator[list[str]]:
    """Distinct values, sorted, in lists of at most `size`."""
    ordered = sorted(set(values))
    for start in range(0, len(ordered), size):
        yield ordered[start:start + size]


def code_key(value: object) -> str | None:
    """A code as X3's own comparisons see it (a filter that matched ignores case and padding):
    what an answer's row is matched to the codes asked with. None for a value that is not text."""
    return value.strip().casefold() if isinstance(value, str) else None


def confirmed(asked: list[str], rows: Iterable[dict], code_field: str,
              group: tuple[str, str]) -> set[str]:
    """The codes of `asked` that rows of X3's answer hold under `group` (field, value): only
    codes asked for count, whatever else the answer carries."""
    group_field, value = group
    held = {code_key(r.get(code_field)) for r in rows
            if code_key(r.get(group_field)) == code_key(value)}
    return {c for c in asked if code_key(c) in held}


def by_type(pairs: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """(dimension type, value) pairs grouped by type."""
    grouped: dict[str, set[str]] = {}
    for dim_type, value in pairs:
        grouped.setdefault(dim_type, set()).add(value)
    return grouped
