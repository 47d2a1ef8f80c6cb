"""Server-side SVG geometry of the overview's charts."""

from datetime import date, timedelta

from console import charts


def test_stacked_bars_scale_to_the_busiest_day_and_stack_per_series():
    today = date.today()
    rows = [{"day": today, "series": "USD", "n": 3}, {"day": today, "series": "EUR", "n": 1},
            {"day": today - timedelta(days=2), "series": "USD", "n": 2},
            {"day": today - timedelta(days=40), "series": "USD", "n": 99}]  # outside: ignored
    chart = charts.stacked_per_day(rows, days=30, width=300, height=120)
    assert chart.max_value == 4 and [name for name, _ in chart.legend] == ["EUR", "USD"]
    last = [b for b in chart.bars if b.x >= 290]
    # The busiest day fills the plot: height less 20 for the labels and 16 for the scale.
    assert sum(b.height for b in last) == 84
    eur, usd = sorted(last, key=lambda b: b.title)
    assert eur.height == 21 and usd.height == 63 and usd.y + usd.height == eur.y
    assert usd.y == 16 and eur.y + eur.height == 100
    assert chart.labels[-1][1] == today.strftime("%d %b")


def test_empty_charts_draw_nothing():
    assert charts.stacked_per_day([]).bars == [] and charts.horizontal([]) == []


def test_horizontal_bars_are_proportional():
    bars = charts.horizontal([{"reason": "a", "n": 4}, {"reason": "b", "n": 1}], width=200)
    assert [(b.width, b.y) for b in bars] == [(200, 0), (50, 22)]
