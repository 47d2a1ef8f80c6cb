"""Stampli's flat-file layout: field names, aliases and the marshmallow schemas of one row."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

INVOICE_HEADER_FIELDS = (
    "stampli_invoice_id", "invoice_number", "vendor_id", "vendor_name", "vendor_tax_id",
    "invoice_date", "due_date", "posting_date", "currency", "invoice_total", "tax_amount",
    "po_number", "approval_status", "approved_date", "approver",
)
INVOICE_LINE_FIELDS = (
    "line_number", "line_description", "line_quantity", "line_amount", "gl_account",
    "cost_center", "location",
)
VENDOR_FIELDS = (
    "vendor_id", "vendor_name", "tax_id", "address1", "address2", "city", "state",
    "postal_code", "country", "email", "payment_terms", "currency", "active",
)


def header_key(name: str) -> str:
    """Header matching ignores case, surrounding spaces, a BOM and `_`/`-`/space differences."""
    return re.sub(r"[\s_\-]+", "", name.replace("\ufeff", "").strip().casefold())


@dataclass(frozen=True)
class Layout:
    """How one customer's files look: aliases, encoding, delimiter and date formats."""

    aliases: dict[str, str] = field(default_factory=dict)  # header_key(their name) -> our field
    encoding: str = "utf-8-sig"
    delimiter: str = ","
    date_formats: tuple[str, ...] = ("%Y-%m-%d",)
    thousands_separator: str = ","
    decimal_separator: str = "."

    def field_for(self, header: str) -> str | None:
        key = header_key(header)
        if key in self.aliases:
            return self.aliases[key]
        return _CANONICAL.get(key)

    @classmethod
    def from_file(cls, path: str | Path) -> Layout:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        aliases = {header_key(theirs): ours for ours, names in raw.get("aliases", {}).items()
                   for theirs in ([names] if isinstance(names, str) else names)}
        return cls(
            aliases=aliases,
            encoding=raw.get("encoding", "utf-8-sig"),
            delimiter={"tab": "\t", "\\t": "\t"}.get(raw.get("delimiter", ","),
                                                     raw.get("delimiter", ",")),
            date_formats=tuple(raw.get("date_formats", ["%Y-%m-%d"])),
            thousands_separator=raw.get("thousands_separator", ","),
            decimal_separator=raw.get("decimal_separator", "."),
        )


_CANONICAL = {header_key(n): n for n in
              (*INVOICE_HEADER_FIELDS, *INVOICE_LINE_FIELDS, *VENDOR_FIELDS)}


class DecimalAmount(fields.Field):
    """A money or quantity value: Decimal only, thousands separators per layout, no floats."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        layout: Layout = self.parent.layout  # type: ignore[attr-defined]
        text = str(value).strip().replace(" ", "")
        negative = text.startswith("(") and text.endswith(")")  # accounting negatives
        if negative:
            text = text[1:-1]
        if layout.thousands_separator:
            text = text.replace(layout.thousands_separator, "")
        if layout.decimal_separator != ".":
            text = text.replace(layout.decimal_separator, ".")
        if not re.fullmatch(r"[+-]?\d+(\.\d+)?", text):
            raise ValidationError(f"not a decimal amount: {value!r}")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise ValidationError(f"not a decimal amount: {value!r}") from None
        return -amount if negative else amount


class LayoutDate(fields.Field):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        layout: Layout = self.parent.layout  # type: ignore[attr-defined]
        text = str(value).strip()
        for fmt in layout.date_formats:
            try:
                return datetime.strptime(text, fmt).date()
            except ValueError:
                continue
        raise ValidationError(f"not a date in {' or '.join(layout.date_formats)}: {value!r}")


def _text(required: bool = False, max_len: int | None = None) -> fields.Str:
    checks = [validate.Length(min=1)] if required else []
    if max_len:
        checks.append(validate.Length(max=max_len))
    if required:
        return fields.Str(required=True, validate=checks or None)
    return fields.Str(load_default=None, validate=checks or None)


class _LayoutSchema(Schema):
    def __init__(self, layout: Layout, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layout = layout


class InvoiceRowSchema(_LayoutSchema):
    stampli_invoice_id = _text()
    invoice_number = _text(required=True, max_len=30)
    vendor_id = _text(required=True)
    vendor_name = _text(required=True)
    vendor_tax_id = _text()
    invoice_date = LayoutDate(required=True)
    due_date = LayoutDate(load_default=None)
    posting_date = LayoutDate(load_default=None)
    currency = fields.Str(required=True, validate=validate.Regexp(
        r"^[A-Z]{3}$", error="must be an ISO 4217 code like USD"))
    invoice_total = DecimalAmount(required=True)
    tax_amount = DecimalAmount(load_default=Decimal("0"))
    po_number = _text()
    approval_status = _text(required=True)
    approved_date = LayoutDate(load_default=None)
    approver = _text()
    line_number = fields.Int(required=True, strict=False, validate=validate.Range(min=1))
    line_description = _text()
    line_quantity = DecimalAmount(load_default=Decimal("1"))
    line_amount = DecimalAmount(required=True)
    gl_account = _text(required=True)
    cost_center = _text()
    location = _text()


class VendorRowSchema(_LayoutSchema):
    vendor_id = _text(required=True)
    vendor_name = _text(required=True)
    tax_id = _text()
    address1 = _text()
    address2 = _text()
    city = _text()
    state = _text()
    postal_code = _text()
    country = fields.Str(load_default=None, validate=validate.Regexp(
        r"^[A-Z]{2}$", error="must be an ISO 3166 alpha-2 code like US"))
    email = _text()
    payment_terms = _text()
    currency = _text()
    active = fields.Str(load_default="true")
