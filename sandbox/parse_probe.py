"""`python -m sandbox.parse_probe FILE`: parse one export file in a fresh process and print
`rows invoices peak_rss_bytes`. The memory test and bench/parse.py both measure through it, so
the figure is the parser's own, not the test runner's."""

from __future__ import annotations

import sys

from pipeline.stampli import parse
from pipeline.stampli.layout import Layout


def main(path: str) -> None:
    layout = Layout()
    with open(path, "rb") as fh:
        stream = parse.parse_invoices(parse.read_rows(path, fh, layout), layout)
        invoices = sum(1 for item in stream if not isinstance(item, parse.Rejection))
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(stream.rows, invoices, peak * 1024)


if __name__ == "__main__":
    main(sys.argv[1])
