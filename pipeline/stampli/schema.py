"""Stampli's flat-file row: the marshmallow schemas are the definition of a valid row.

`fastload.FastLoader` runs the same definition faster for the common case; anything it cannot
vouch for goes through `Schema.load`, so the messages users see always come from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from pipeline.stampli.layout import (  # noqa: F401  (re-exported: the row layout lives here too)
    DIMENSION_MAX,
    INVOICE_HEADER_FIELDS,
    INVOICE_LINE_FIELDS,
    VENDOR_FIELDS,
    Layout,
    LayoutError,
    header_key,
)

# Postgres stores line amounts as numeric(18, 2) and quantities as numeric(18, 4): a value that
# does not fit is refused here with a reason, rather than rounded or overflowing in the ledger.
MONEY = {"places": 2, "int_digits": 16}
QUANTITY = {"places": 4, "int_digits": 14}
MAX_LINE_NUMBER = 1_000_000


class DecimalAmount(fields.Field):
    """A money or quantity value: Decimal only (never float), separators per layout, a bounded
    number of places; accounting negatives `(12.50)` accepted."""

    def __init__(self, *, places: int = 2, int_digits: int = 16, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.places, self.int_digits = places, int_digits
        self._convert: Callable[[str], Decimal] | None = None
        self._common: tuple[Callable[[str], Any], str] | None = None

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        return self.convert(str(value))

    def convert(self, value: str) -> Decimal:
        return self.converter()(value)

    def converter(self) -> Callable[[str], Decimal]:
        """`convert` as a plain function, for hot loops (fastload)."""
        if self._convert is None:
            self._convert = self._compile(self.parent.layout)  # type: ignore[attr-defined]
        return self._convert

    def common_shape(self) -> tuple[Callable[[str], Any], str] | None:
        """(matcher, thousands separator): `convert` turns text the matcher accepts into
        `Decimal(text.replace(thousands, ""))`, negative zero made positive. None when the
        layout's decimal separator is not `.` (no such shortcut)."""
        self.converter()
        return self._common

    def _compile(self, layout: Layout) -> Callable[[str], Decimal]:
        """The common shapes (`-1234.50`, `1,234.50`) take one regex match, then Decimal; the
        rest (parentheses, errors and their messages) the general path. Called per cell."""
        sep, thousands = layout.decimal_separator, layout.thousands_separator
        groups = (self.int_digits - 3) // 3  # grouped digits stay within int_digits
        grouped = (rf"\d{{1,3}}(?:{re.escape(thousands)}\d{{3}}){{1,{groups}}}|"
                   if thousands and groups else "")
        common = re.compile(rf"-?(?:{grouped}\d{{1,{self.int_digits}}})"
                            rf"(?:{re.escape(sep)}\d{{1,{self.places}}})?", re.ASCII).fullmatch
        general = self._convert_general
        self._common = (common, thousands) if sep == "." else None

        def convert(value: str) -> Decimal:
            text = value.strip()
            if not common(text):
                return general(value, text, layout)
            if thousands:
                text = text.replace(thousands, "")
            amount = Decimal(text if sep == "." else text.replace(sep, "."))
            return amount if amount else amount.copy_abs()  # no "-0.00" in payloads
        return convert

    def _convert_general(self, value: str, text: str, layout: Layout) -> Decimal:
        negative = text.startswith("(") and text.endswith(")")
        if negative:
            text = text[1:-1].strip()
        match = layout.amount_pattern.fullmatch(text)
        if match is None:
            raise ValidationError(f"not a decimal amount: {value!r}")
        sign, whole, fraction = match.groups()
        if negative and sign:
            raise ValidationError(f"not a decimal amount: {value!r}")
        whole = whole.replace(layout.thousands_separator, "") if layout.thousands_separator \
            else whole
        if fraction and len(fraction) > self.places:
            raise ValidationError(f"more than {self.places} decimal places: {value!r}")
        if len(whole.lstrip("0")) > self.int_digits:
            raise ValidationError(f"too large: {value!r}")
        try:
            amount = Decimal(f"{'-' if negative else sign}{whole}"
                             + (f".{fraction}" if fraction else ""))
        except InvalidOperation:  # pragma: no cover - the pattern admits digits only
            raise ValidationError(f"not a decimal amount: {value!r}") from None
        return amount.copy_abs() if not amount else amount


class LayoutDate(fields.Field):
    """A date in one of the layout's formats (tried in order)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        return self.convert(str(value))

    def convert(self, value: str) -> date:
        layout: Layout = self.parent.layout  # type: ignore[attr-defined]
        text = value.strip()
        for fmt in layout.date_formats:
            try:
                return datetime.strptime(text, fmt).date()
            except ValueError:
                continue
        raise ValidationError(f"not a date in {' or '.join(_shown(f) for f in layout.date_formats)}"
                              f": {value!r}")


def _shown(fmt: str) -> str:
    return fmt.replace("%Y", "YYYY").replace("%m", "MM").replace("%d", "DD")


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
    invoice_total = DecimalAmount(required=True, **MONEY)
    tax_amount = DecimalAmount(load_default=Decimal("0"), **MONEY)
    po_number = _text()
    approval_status = _text(required=True)
    approved_date = LayoutDate(load_default=None)
    approver = _text()
    line_number = fields.Int(required=True, strict=False,
                             validate=validate.Range(min=1, max=MAX_LINE_NUMBER))
    line_description = _text()
    line_quantity = DecimalAmount(load_default=Decimal("1"), **QUANTITY)
    line_amount = DecimalAmount(required=True, **MONEY)
    gl_account = _text(required=True)
    cost_center = _text()
    location = _text()


def invoice_row_schema(layout: Layout) -> type[InvoiceRowSchema]:
    """The invoice row schema for this layout: `InvoiceRowSchema` plus one optional text field
    per dimension column (named as the layout names the column)."""
    return _with_dimensions(tuple(name for name, _ in layout.dimensions))


@lru_cache(maxsize=32)
def _with_dimensions(names: tuple[str, ...]) -> type[InvoiceRowSchema]:
    if not names:
        return InvoiceRowSchema
    extra: dict[str, object] = {n: _text(max_len=DIMENSION_MAX) for n in names}
    return type("InvoiceRowSchemaWithDimensions", (InvoiceRowSchema,), extra)


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
