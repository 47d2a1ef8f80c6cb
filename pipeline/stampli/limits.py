"""Bounds on what one export file may make the parser do, and on plausible values.

Hostile or broken exports must not take unbounded memory or time (a 50 MB CSV row, a 50 MB XML
attribute: expat rescans a token it cannot finish on every feed), nor slip implausible values
through (dates in year 1 or 9999, a zero invoice). The defaults suit real Stampli exports; the
environment can change them (pipeline/config.py, README). Parser tests build `Limits` directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any


@dataclass(frozen=True)
class Limits:
    max_line_kb: int = 64  # one CSV row, quoted newlines included
    max_field_kb: int = 16  # one CSV cell; one XML text, tag, attribute, comment or PI
    max_columns: int = 256  # cells of a CSV row (and header)
    max_invoice_lines: int = 10_000  # rows (lines) of one invoice: all are held to build it
    parse_deadline: float = 480.0  # seconds for a whole file; below the task time limit
    date_years_back: int = 10
    date_years_ahead: int = 1
    allow_zero_invoices: bool = False
    today: date | None = None  # fixed by tests; else the day the parse starts

    @property
    def max_line(self) -> int:
        return self.max_line_kb * 1024

    @property
    def max_field(self) -> int:
        return self.max_field_kb * 1024

    def date_window(self) -> tuple[date, date]:
        today = self.today or date.today()
        return _years_from(today, -self.date_years_back), _years_from(today, self.date_years_ahead)

    @classmethod
    def from_settings(cls, s: Any) -> Limits:
        return cls(max_line_kb=s.max_line_kb, max_field_kb=s.max_field_kb,
                   max_columns=s.max_columns, max_invoice_lines=s.max_invoice_lines,
                   parse_deadline=s.parse_deadline,
                   date_years_back=s.date_years_back, date_years_ahead=s.date_years_ahead,
                   allow_zero_invoices=s.allow_zero_invoices)


def _years_from(day: date, years: int) -> date:
    year = min(max(day.year + years, date.min.year), date.max.year)
    try:
        return day.replace(year=year)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=year, day=28)
