"""Charts drawn on the server as SVG geometry (no script): the template only places shapes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

PALETTE = ("#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795", "#718096")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass(frozen=True)
class StackedChart:
    width: int
    height: int
    bars: list[Bar]
    legend: list[tuple[str, str]]
    max_value: int
    labels: list[tuple[float, str]]


def stacked_per_day(rows: list[dict[str, Any]], days: int = 30, width: int = 900,
                    height: int = 200) -> StackedChart:
    """rows: {day, series, n}; one stacked bar per day of the last `days` days."""
    first = date.today() - timedelta(days=days - 1)
    rows = [r for r in rows if first <= r["day"] <= date.today()]  # the database's day may differ
    series = sorted({r["series"] or "?" for r in rows})
    colors = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(series)}
    per_day: dict[date, list[tuple[str, int]]] = {}
    for r in rows:
        per_day.setdefault(r["day"], []).append((r["series"] or "?", int(r["n"])))
    top = max((sum(n for _, n in v) for v in per_day.values()), default=0)
    top_margin = 16  # room for the scale label above the bars
    plot_h, slot = height - 20 - top_margin, width / days
    bars, labels = [], []
    for i in range(days):
        day = first + timedelta(days=i)
        y = float(top_margin + plot_h)
        for name, n in sorted(per_day.get(day, [])):
            h = plot_h * n / top if top else 0
            y -= h
            bars.append(Bar(round(i * slot + 1, 1), round(y, 1), round(slot - 2, 1),
                            round(h, 1), colors[name], f"{day}: {n} {name}"))
        if (days - 1 - i) % 7 == 0:  # weekly, ending today
            labels.append((round(i * slot, 1), day.strftime("%d %b")))
    return StackedChart(width, height, bars, [(s, colors[s]) for s in series], top, labels)


@dataclass(frozen=True)
class HBar:
    y: float
    width: float
    label: str
    n: int


def horizontal(rows: list[dict[str, Any]], width: int = 420, row_h: int = 22) -> list[HBar]:
    """rows: {reason, n}; bar widths scaled to the largest."""
    top = max((int(r["n"]) for r in rows), default=0)
    return [HBar(i * row_h, round(width * int(r["n"]) / top, 1) if top else 0,
                 str(r["reason"]), int(r["n"])) for i, r in enumerate(rows)]
