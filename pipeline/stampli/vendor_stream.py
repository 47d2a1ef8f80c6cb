"""Vendor files: one vendor (or one rejection) per row."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError

from pipeline.stampli.fastload import FastLoader, NeedsSchema, as_marshmallow_input
from pipeline.stampli.parsed import ParseStream, Rejection, VendorFileResult, first_error
from pipeline.stampli.rows import NumberedRow, RowError
from pipeline.stampli.schema import VENDOR_FIELDS, Layout, VendorRowSchema


class VendorStream(ParseStream):
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
        name, text = first_error(exc)
        return Rejection(vendor_id, None, (line_no,), name,
                         f"vendor at line {line_no}: {name}: {text}")


def parse_vendors(rows: Iterable[NumberedRow], layout: Layout) -> VendorStream:
    """Vendors of a file, row by row: iterate for `dict | Rejection`."""
    return VendorStream(rows, layout)
