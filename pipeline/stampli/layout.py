"""A customer's export layout: header aliases, encoding, delimiter, date and number formats,
and the columns that are analytical dimensions.

Stampli has no fixed export template: each customer defines theirs with Stampli support, so the
parser is driven by this object. `MLC_STAMPLI_LAYOUT` names a JSON file (YAML when PyYAML is
installed) that is validated here, so a typo in it is reported once, with every problem listed.

Dimensions: `"dimensions": {"project": "PRJ", "department": "DEP"}` names export columns (matched
like any header, and `aliases` may give them other header names) and the X3 dimension type each
feeds. Each line then carries `"dimensions": {"PRJ": "P-100", "DEP": "OPS"}` (empty cells left
out; no key when a line has none), mapped per type (`mlc mapping import dimension PRJ FILE.csv`)
or passed through. A column may not be a known field, except `cost_center`: by default the cost
center column stays the line's `cost_center`, mapped through `cost_center_map` or else posted
under `MLC_X3_DIMENSION_TYPE`; re-typed (`{"cost_center": "CC"}`) it becomes an ordinary
dimension column like the others: its values go to `dimensions["CC"]` (the line's `cost_center`
is then empty), mapped per type CC, and neither `cost_center_map` nor `MLC_X3_DIMENSION_TYPE`
applies to it.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from pipeline.stampli.limits import Limits

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
# A normalised invoice line (ParsedInvoice.lines): the export's line field -> our key.
LINE_KEYS = {"line_number": "line_number", "line_description": "description",
             "line_quantity": "quantity", "line_amount": "amount", "gl_account": "gl_account",
             "cost_center": "cost_center", "location": "location"}
KNOWN_FIELDS = frozenset((*INVOICE_HEADER_FIELDS, *INVOICE_LINE_FIELDS, *VENDOR_FIELDS))
# The one known field a layout may turn into a dimension column of another type.
RETYPABLE = "cost_center"
DIMENSION_TYPE = re.compile(r"[A-Z][A-Z0-9_]{0,9}")  # an X3 dimension type, e.g. CCT, PRJ
DIMENSION_MAX = 30  # characters of a dimension value in the export

DELIMITERS = {",": ",", ";": ";", "|": "|", "\t": "\t", "tab": "\t", "\\t": "\t",
              "comma": ",", "semicolon": ";", "pipe": "|"}
# Friendly names as the contract writes them; a strptime pattern (with %) is accepted too.
DATE_FORMATS = {"iso": "%Y-%m-%d", "yyyy-mm-dd": "%Y-%m-%d", "mm/dd/yyyy": "%m/%d/%Y",
                "dd.mm.yyyy": "%d.%m.%Y", "dd/mm/yyyy": "%d/%m/%Y", "yyyymmdd": "%Y%m%d"}
THOUSANDS = (",", ".", " ", "'", "\u00a0", "\u202f", "")
# One byte per character and ASCII-compatible, or UTF-8: what the CSV sniffing and NUL check
# assume. UTF-16/32 exports are refused with a reason rather than misread.
_WIDE = re.compile(r"utf[-_]?(16|32)|utf[-_]?7", re.IGNORECASE)


class LayoutError(ValueError):
    """The layout file is unreadable or invalid; the message lists every problem."""


def header_key(name: str) -> str:
    """Header matching ignores case, surrounding spaces, a BOM and `_`/`-`/space differences."""
    return re.sub(r"[\s_\-]+", "", name.replace("\ufeff", "").strip().casefold())


_CANONICAL = {header_key(n): n for n in KNOWN_FIELDS}


@dataclass(frozen=True)
class Layout:
    """How one customer's files look: aliases, encoding, delimiter and date formats."""

    aliases: dict[str, str] = field(default_factory=dict)  # header_key(their name) -> our field
    encoding: str = "utf-8-sig"
    delimiter: str = ","
    date_formats: tuple[str, ...] = ("%Y-%m-%d",)
    thousands_separator: str = ","
    decimal_separator: str = "."
    # (our field name, X3 dimension type): the field name is the column name as the layout
    # writes it, or `cost_center` when that column is re-typed.
    dimensions: tuple[tuple[str, str], ...] = ()
    # Size bounds and value windows: from the environment (ledger.layout), never the layout file.
    limits: Limits = field(default_factory=Limits)

    def field_for(self, header: str) -> str | None:
        key = header_key(header)
        if key in self.aliases:
            return self.aliases[key]
        return self._dimension_columns.get(key) or _CANONICAL.get(key)

    @cached_property
    def _dimension_columns(self) -> dict[str, str]:
        return {header_key(name): name for name, _ in self.dimensions}

    @cached_property
    def amount_pattern(self) -> re.Pattern[str]:
        """sign, integer part (thousands grouped strictly, or none), fraction."""
        t, d = re.escape(self.thousands_separator), re.escape(self.decimal_separator)
        grouped = rf"\d{{1,3}}(?:{t}\d{{3}})+|" if self.thousands_separator else ""
        return re.compile(rf"([+-]?)({grouped}\d+)(?:{d}(\d+))?", re.ASCII)

    @classmethod
    def from_file(cls, path: str | Path) -> Layout:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise LayoutError(f"layout file {path}: {exc}") from None
        return cls.from_dict(_load_mapping(path, text), source=str(path))

    @classmethod
    def from_dict(cls, raw: Any, source: str = "layout") -> Layout:
        if not isinstance(raw, dict):
            raise LayoutError(f"{source}: must be a mapping of settings (a JSON object)")
        try:
            data = _LayoutFileSchema().load(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{k or 'file'}: {_flat(v)}" for k, v in
                                 sorted(exc.normalized_messages().items()))
            raise LayoutError(f"{source}: {problems}") from None
        dimensions = tuple((_dimension_field(name), dim_type)
                           for name, dim_type in data["dimensions"].items())
        dimension_field = {header_key(name): name for name, _ in dimensions}
        aliases = {header_key(theirs): dimension_field.get(header_key(ours), ours)
                   for ours, names in data["aliases"].items()
                   for theirs in ([names] if isinstance(names, str) else names)}
        return cls(aliases=aliases, encoding=data["encoding"], delimiter=data["delimiter"],
                   date_formats=tuple(data["date_formats"]),
                   thousands_separator=data["thousands_separator"],
                   decimal_separator=data["decimal_separator"], dimensions=dimensions)


def _dimension_field(name: str) -> str:
    name = name.strip()
    return RETYPABLE if header_key(name) == header_key(RETYPABLE) else name


def _flat(messages: Any) -> str:
    if isinstance(messages, dict):
        return ", ".join(f"{k}: {_flat(v)}" for k, v in messages.items())
    if isinstance(messages, list):
        return " ".join(str(m) for m in messages)
    return str(messages)


def _load_mapping(path: Path, text: str) -> Any:
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml  # optional: only customers who prefer YAML need PyYAML
        except ImportError:
            raise LayoutError(f"layout file {path} is YAML but PyYAML is not installed;"
                              " use JSON or install PyYAML") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise LayoutError(f"layout file {path}: not valid YAML: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LayoutError(f"layout file {path}: not valid JSON: {exc}") from None


class _Aliases(fields.Field):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any
                     ) -> dict[str, str | list[str]]:
        if not isinstance(value, dict):
            raise ValidationError("must map our field names to their header name(s)")
        problems = []
        for ours, theirs in value.items():
            names = [theirs] if isinstance(theirs, str) else theirs
            if not isinstance(names, list) or not all(isinstance(n, str) and n.strip()
                                                      for n in names):
                problems.append(f"{ours}: header names must be non-empty strings")
        if problems:
            raise ValidationError("; ".join(problems))
        return value


class _Dimensions(fields.Field):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any
                     ) -> dict[str, str]:
        if not isinstance(value, dict):
            raise ValidationError("must map export column names to X3 dimension types")
        problems, columns, types = [], {}, {}
        for name, dim_type in value.items():
            key = header_key(name)
            if not key:
                problems.append(f"column name {name!r} is empty")
                continue
            if key in _CANONICAL and _CANONICAL[key] != RETYPABLE:
                problems.append(f"column {name!r} is the known field {_CANONICAL[key]}; only"
                                f" {RETYPABLE} can be made a dimension")
            if key in columns:
                problems.append(f"columns {columns[key]!r} and {name!r} are the same header")
            columns[key] = name
            if not isinstance(dim_type, str) or not DIMENSION_TYPE.fullmatch(dim_type):
                problems.append(f"{name}: dimension type {dim_type!r} must be 1 to 10 upper-case"
                                " letters, digits or _ (like PRJ)")
            elif dim_type in types:
                problems.append(f"columns {types[dim_type]!r} and {name!r} both feed"
                                f" dimension {dim_type}")
            else:
                types[dim_type] = name
        if problems:
            raise ValidationError("; ".join(problems))
        return value


class _Encoding(fields.Str):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        name = super()._deserialize(value, attr, data, **kwargs)
        try:
            canonical = codecs.lookup(name).name
        except LookupError:
            raise ValidationError(f"unknown encoding {name!r}") from None
        if _WIDE.search(canonical):
            raise ValidationError(f"{name} is not supported: export as UTF-8 or cp1252")
        # UTF-8 "with or without BOM" per the contract: utf-8-sig reads both.
        return "utf-8-sig" if canonical == "utf-8" else canonical


class _Choice(fields.Str):
    def __init__(self, choices: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.choices = choices

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if text in self.choices:
            return self.choices[text]
        if text.lower() in self.choices:
            return self.choices[text.lower()]
        if "%" in text and self.choices is DATE_FORMATS:
            return text  # a strptime pattern, checked by _check_date_format
        raise ValidationError(f"{text!r} is not one of {', '.join(map(repr, self.choices))}")


def _check_date_format(pattern: str) -> None:
    try:
        formatted = date(2026, 11, 3).strftime(pattern)
        if datetime.strptime(formatted, pattern).date() != date(2026, 11, 3):
            raise ValueError
    except ValueError:
        raise ValidationError(f"{pattern!r} does not round-trip a date") from None


class _LayoutFileSchema(Schema):
    class Meta:
        unknown = RAISE  # a misspelt key is a mistake, not a default

    aliases = _Aliases(load_default=dict)
    dimensions = _Dimensions(load_default=dict)
    encoding = _Encoding(load_default="utf-8-sig")
    delimiter = _Choice(DELIMITERS, load_default=",")
    date_formats = fields.List(_Choice(DATE_FORMATS, validate=_check_date_format),
                               load_default=lambda: ["%Y-%m-%d"],
                               validate=validate.Length(min=1))
    thousands_separator = fields.Str(load_default=",", validate=validate.OneOf(THOUSANDS))
    decimal_separator = fields.Str(load_default=".", validate=validate.OneOf((".", ",")))

    @validates_schema(skip_on_field_errors=False)
    def _aliases_name_known_columns(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Aliases are keyed by a known field or a dimension column; none of their header names
        may be a dimension column of its own."""
        dimensions = {header_key(n): n for n in data.get("dimensions") or {}}
        problems = []
        for ours, theirs in (data.get("aliases") or {}).items():
            if ours not in KNOWN_FIELDS and header_key(ours) not in dimensions:
                problems.append(f"unknown field {ours!r}")
            owner = dimensions.get(header_key(ours), ours)
            for name in [theirs] if isinstance(theirs, str) else theirs:
                column = dimensions.get(header_key(name))
                if column is not None and header_key(column) != header_key(owner):
                    problems.append(f"{name!r} is an alias of {ours} and also the dimension"
                                    f" column {column!r}")
        if problems:
            raise ValidationError("; ".join(problems), "aliases")

    @validates_schema(skip_on_field_errors=False)
    def _separators_differ(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("thousands_separator") == data.get("decimal_separator"):
            raise ValidationError("thousands and decimal separators must differ",
                                  "thousands_separator")
