"""Stampli's flat-file row: the marshmallow schemas are the definition of a valid row.

`fastload.FastLoader` runs the same definition faster for the common case; anything it cannot
vouch for goes through `Schema.load`, so the messages users see always come from here.
"""

from __future__ import annotations

import re
import unicodedata
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
    """A date in one of the layout's formats (tried in order), ASCII digits only (strptime
    reads `٢٠٢٦` as 2026), inside the plausible window of the layout's limits: year 1 and
    9999 parse, but no real invoice carries them."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        return self.convert(str(value))

    def convert(self, value: str) -> date:
        schema = self.parent
        layout: Layout = schema.layout  # type: ignore[attr-defined]
        text = value.strip()
        day = None
        if text.isascii():
            for fmt in layout.date_formats:
                try:
                    day = datetime.strptime(text, fmt).date()
                    break
                except ValueError:
                    continue
        if day is None:
            raise ValidationError(f"not a date in"
                                  f" {' or '.join(_shown(f) for f in layout.date_formats)}"
                                  f": {value!r}")
        low, high = schema.date_window  # type: ignore[attr-defined]
        if not low <= day <= high:
            raise ValidationError(f"{day.isoformat()} is outside the accepted window {low} to"
                                  f" {high} (MLC_DATE_YEARS_BACK, MLC_DATE_YEARS_AHEAD)")
        return day


class AsciiInt(fields.Field):
    """A whole number in ASCII digits: int() also takes `١`, `１`, `1_0` and ` +1`."""

    _digits = re.compile(r"[0-9]{1,18}").fullmatch

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        text = str(value).strip()
        if self._digits(text) is None:
            raise ValidationError(f"not a whole number in ASCII digits only: {value!r}")
        return int(text)


# Printable by str.isprintable() but invisible or empty on screen (fillers, blanks, joiners
# that are not Cf): refused like control and format characters.
_INVISIBLE = re.compile("[\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0]").search


def clean_text(text: str) -> str:
    """NFKC-normalised text without control (Cc), format (Cf: zero-width, bidi), separator
    (other than space), private, unassigned or invisible characters; else ValidationError
    naming the first one. ASCII costs one C call."""
    if text.isascii():
        if text.isprintable():
            return text
    else:
        text = unicodedata.normalize("NFKC", text)
        if text.isprintable() and _INVISIBLE(text) is None:
            return text
    bad = next(c for c in text if not c.isprintable() or _INVISIBLE(c))
    name = unicodedata.name(bad, None)
    raise ValidationError(f"holds an invisible or control character U+{ord(bad):04X}"
                          f" {name or '(control)'}")


_LINE_BREAKS = re.compile(r"\s*[\t\n\r\v\f\u2028\u2029]\s*").sub


def clean_name(text: str) -> str:
    """A name: tabs and line breaks (a quoted newline in a CSV cell) become one space, as
    X3 holds names on one line; anything else is `clean_text`."""
    if text.isascii() and text.isprintable():
        return text
    return clean_text(_LINE_BREAKS(" ", text))


class CleanText(fields.String):
    """Keys and codes: see `clean_text`. Normalised here, so the dedup key, the payload and
    what X3 receives agree (`INV-７` is `INV-7`)."""

    clean = staticmethod(clean_text)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return self.clean(super()._deserialize(value, attr, data, **kwargs))


class NameText(CleanText):
    """Names: see `clean_name`."""

    clean = staticmethod(clean_name)


def _shown(fmt: str) -> str:
    return fmt.replace("%Y", "YYYY").replace("%m", "MM").replace("%d", "DD")


def _text(required: bool = False, max_len: int | None = None, *, clean: str | None = "key",
          too_long: str = "longer than {max} characters") -> fields.Str:
    """clean: "key" (codes, ids: `CleanText`), "name" (`NameText`) or None (free text)."""
    checks = [validate.Length(min=1)] if required else []
    if max_len:
        checks.append(validate.Length(max=max_len, error=too_long))
    kind = {"key": CleanText, "name": NameText, None: fields.Str}[clean]
    if required:
        return kind(required=True, validate=checks or None)
    return kind(load_default=None, validate=checks or None)


# X3's own limits (sage-x3-api.md) where refusing is right; free text that X3 truncates (the
# supplier name to 35, line descriptions to 30, at posting) only gets a sanity bound here.
X3_DOCUMENT_NUMBER = 30
_BPRVCR = "longer than {max} characters, the X3 limit for a supplier document number (BPRVCR)"
KEY_MAX, NAME_MAX, TEXT_MAX, CODE_MAX = 100, 255, 1000, 100


class _LayoutSchema(Schema):
    def __init__(self, layout: Layout, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layout = layout
        self.date_window = layout.limits.date_window()  # once per file: "today" moves


class InvoiceRowSchema(_LayoutSchema):
    stampli_invoice_id = _text(max_len=KEY_MAX)
    invoice_number = _text(required=True, max_len=X3_DOCUMENT_NUMBER, too_long=_BPRVCR)
    vendor_id = _text(required=True, max_len=KEY_MAX)
    vendor_name = _text(required=True, max_len=NAME_MAX, clean="name")
    vendor_tax_id = _text(max_len=CODE_MAX)
    invoice_date = LayoutDate(required=True)
    due_date = LayoutDate(load_default=None)
    posting_date = LayoutDate(load_default=None)
    currency = fields.Str(required=True, validate=validate.Regexp(
        r"^[A-Z]{3}$", error="must be an ISO 4217 code like USD"))
    invoice_total = DecimalAmount(required=True, **MONEY)
    tax_amount = DecimalAmount(load_default=Decimal("0"), **MONEY)
    po_number = _text(max_len=CODE_MAX)
    approval_status = _text(required=True, max_len=CODE_MAX)
    approved_date = LayoutDate(load_default=None)
    approver = _text(max_len=NAME_MAX, clean=None)
    line_number = AsciiInt(required=True, validate=validate.Range(min=1, max=MAX_LINE_NUMBER))
    line_description = _text(max_len=TEXT_MAX, clean=None)
    # Quantities repeat across lines (1, 2, 10...): fastload remembers their conversions.
    line_quantity = DecimalAmount(load_default=Decimal("1"), metadata={"repeats": True},
                                  **QUANTITY)
    line_amount = DecimalAmount(required=True, **MONEY)
    # Line-level codes: checked per row, so left plain (every row pays for a check); each is
    # mapped and validated against X3 before posting, and bounded by MLC_MAX_FIELD_KB here.
    gl_account = _text(required=True, clean=None)
    cost_center = _text(clean=None)
    location = _text(clean=None)


def invoice_row_schema(layout: Layout) -> type[InvoiceRowSchema]:
    """The invoice row schema for this layout: `InvoiceRowSchema` plus one optional text field
    per dimension column (named as the layout names the column)."""
    return _with_dimensions(tuple(name for name, _ in layout.dimensions))


@lru_cache(maxsize=32)
def _with_dimensions(names: tuple[str, ...]) -> type[InvoiceRowSchema]:
    if not names:
        return InvoiceRowSchema
    extra: dict[str, object] = {n: _text(max_len=DIMENSION_MAX,
                                         too_long="Longer than maximum length {max}.")
                                   for n in names}
    return type("InvoiceRowSchemaWithDimensions", (InvoiceRowSchema,), extra)


class VendorRowSchema(_LayoutSchema):
    vendor_id = _text(required=True, max_len=KEY_MAX)
    vendor_name = _text(required=True, max_len=NAME_MAX, clean="name")
    tax_id = _text(max_len=CODE_MAX)
    address1 = _text(max_len=NAME_MAX, clean=None)
    address2 = _text(max_len=NAME_MAX, clean=None)
    city = _text(max_len=NAME_MAX, clean=None)
    state = _text(max_len=NAME_MAX, clean=None)
    postal_code = _text(max_len=CODE_MAX)
    country = fields.Str(load_default=None, validate=validate.Regexp(
        r"^[A-Z]{2}$", error="must be an ISO 3166 alpha-2 code like US"))
    email = _text(max_len=NAME_MAX)
    payment_terms = _text(max_len=CODE_MAX)
    currency = _text(max_len=CODE_MAX)
    active = fields.Str(load_default="true")
