"""Parser benchmark: throughput against a bare csv.DictReader pass, and peak memory.

    python bench/parse.py [--lines 200000] [--big-mb 100] [--repeat 3]

1. Writes a 200,000-line invoice CSV (synthetic, Stampli-shaped: quoted vendor names, grouped
   thousands) to a temporary directory; times `parse_invoices(read_rows(...))` to the last
   invoice and a bare `csv.DictReader` pass over the same file (best of --repeat, interleaved);
   prints lines/s and the ratio (target <= 3). Same for the file written as XML, for reference.
2. Writes a ~100 MB CSV and parses it in a child process; prints the child's peak RSS (VmHWM;
   target < 150 MB) and that of a child parsing a tiny file (the interpreter and imports).
3. Hostile files (issue 12), --hostile-mb each (default 50), between two good invoices: a CSV
   row of commas, a CSV cell on one line, a quoted CSV cell of short lines, an XML attribute,
   comment and field text. Each is parsed in a child process with the default limits: the
   outcome (invoices kept, the refusal), the time and the peak RSS.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's pipeline, not an installed copy

from pipeline.stampli import parse  # noqa: E402
from pipeline.stampli.layout import Layout  # noqa: E402
from sandbox import writer  # noqa: E402


def dictreader_pass(path: Path) -> int:
    with open(path, encoding="utf-8", newline="") as fh:
        return sum(1 for _ in csv.DictReader(fh))


def our_pass(path: Path) -> int:
    layout = Layout()
    with open(path, "rb") as fh:
        stream = parse.parse_invoices(parse.read_rows(path.name, fh, layout), layout)
        for _ in stream:
            pass
    return stream.rows


def best_times(fns: dict[str, object], path_of: dict[str, Path], repeat: int
               ) -> dict[str, tuple[float, float]]:
    """Best wall and CPU seconds per function, runs interleaved so that load on the machine
    affects them alike."""
    best = {name: (float("inf"), float("inf")) for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn(path_of[name])  # type: ignore[operator]
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def write_big_csv(path: Path, megabytes: int) -> int:
    """Realistic rows, quickly: one block of synthetic invoices repeated under new numbers."""
    block = io.StringIO(newline="")
    writer.write_invoices_csv(writer.synthetic_invoices(4000, seed=9), block, grouped=True)
    header, _, body = block.getvalue().partition("\r\n")
    lines = 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(header + "\r\n")
        k = 0
        while fh.tell() < megabytes * 1_000_000:
            fh.write(body.replace("INV-", f"B{k}-"))
            lines, k = lines + 4000, k + 1
    return lines


def child_peak(path: Path) -> tuple[int, int, int, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    probe = [sys.executable, "-m", "sandbox.parse_probe", str(path)]
    out = subprocess.run(probe, env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    rows, invoices, peak = map(int, out.split())
    return rows, invoices, peak, time.perf_counter() - start


_HOSTILE_PROBE = """
import resource, sys, time
from pipeline.stampli import parse
from pipeline.stampli.layout import Layout
layout, start = Layout(), time.perf_counter()
try:
    with open(sys.argv[1], "rb") as fh:
        items = list(parse.parse_invoices(parse.read_rows(sys.argv[1], fh, layout), layout))
    kept = sum(1 for i in items if not isinstance(i, parse.Rejection))
    refused = [i.reason for i in items if isinstance(i, parse.Rejection)]
    outcome = f"{kept} invoices kept, refused: {'; '.join(refused)}"
except parse.FileUnreadable as exc:
    outcome = f"file refused: {exc}"
seconds = time.perf_counter() - start
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(f"{seconds:.2f}\t{peak * 1024}\t{outcome}")
"""

_CSV_HEAD = ("invoice_number,vendor_id,vendor_name,invoice_date,currency,invoice_total,"
             "line_number,line_description,line_amount,gl_account,approval_status\n"
             "OK-1,V-1,Acme,2026-11-01,USD,100.00,1,Hoses,100.00,6100,Approved\n")
_CSV_TAIL = "OK-2,V-2,Bright,2026-11-01,USD,50.00,1,Paper,50.00,6100,Approved\n"
_XML_INVOICE = ("<Invoice><invoice_number>{n}</invoice_number><vendor_id>V-1</vendor_id>"
                "<vendor_name>{name}</vendor_name><invoice_date>2026-11-01</invoice_date>"
                "<currency>USD</currency><invoice_total>100.00</invoice_total>"
                "<approval_status>Approved</approval_status><Lines><Line>"
                "<line_number>1</line_number><line_amount>100.00</line_amount>"
                "<gl_account>6100</gl_account></Line></Lines></Invoice>\n")


def write_hostile(directory: Path, megabytes: int) -> dict[str, Path]:
    """The hostile files, each with `megabytes` MB of the hostile part."""
    size, files = megabytes << 20, {}

    def write(name: str, *parts: str | tuple[str, int]) -> None:
        path = directory / name
        with open(path, "w", encoding="utf-8", newline="") as fh:
            for part in parts:
                if isinstance(part, tuple):  # (unit, repeat): written in blocks
                    unit, count = part
                    block = unit * max(1, (1 << 20) // len(unit))
                    for _ in range(count * len(unit) // len(block)):
                        fh.write(block)
                else:
                    fh.write(part)
        files[name] = path

    write("row_of_commas.csv", _CSV_HEAD, (",", size), "\n", _CSV_TAIL)
    write("one_line_cell.csv", _CSV_HEAD, "BAD-1,V-1,Acme,2026-11-01,USD,1,1,", ("x", size),
          ",1,6100,Approved\n", _CSV_TAIL)
    write("cell_of_short_lines.csv", _CSV_HEAD, 'BAD-1,V-1,Acme,2026-11-01,USD,1,1,"',
          ("x\n", size // 2), '",1,6100,Approved\n', _CSV_TAIL)
    root = '<?xml version="1.0" encoding="utf-8"?>\n<StampliExport type="invoices">\n'
    good = _XML_INVOICE.format(n="OK-1", name="Acme")
    write("attribute.xml", root, good, '<Note text="', ("a", size), '"/>\n',
          _XML_INVOICE.format(n="OK-2", name="Bright"), "</StampliExport>\n")
    write("comment.xml", root, good, "<!-- ", ("c", size), " -->\n",
          _XML_INVOICE.format(n="OK-2", name="Bright"), "</StampliExport>\n")
    text_invoice = _XML_INVOICE.split("{name}")
    write("field_text.xml", root, good, text_invoice[0].format(n="BAD-1"), ("t", size),
          text_invoice[1], _XML_INVOICE.format(n="OK-2", name="Bright"), "</StampliExport>\n")
    return files


def hostile_probe(path: Path) -> tuple[float, int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _HOSTILE_PROBE, str(path)], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    seconds, peak, outcome = out.rstrip("\n").split("\t", 2)
    return float(seconds), int(peak), outcome


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=200_000)
    p.add_argument("--big-mb", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--hostile-mb", type=int, default=50)
    p.add_argument("--only-hostile", action="store_true", help="skip parts 1 and 2")
    args = p.parse_args()
    if args.only_hostile:
        with tempfile.TemporaryDirectory(prefix="mlc-bench-") as tmp:
            return run_hostile(Path(tmp), args.hostile_mb)

    with tempfile.TemporaryDirectory(prefix="mlc-bench-") as tmp:
        csv_path, xml_path = Path(tmp) / "invoices.csv", Path(tmp) / "invoices.xml"
        invoices = list(writer.synthetic_invoices(args.lines, seed=1))
        with open(csv_path, "w", encoding="utf-8", newline="") as fh:
            writer.write_invoices_csv(invoices, fh, grouped=True)
        with open(xml_path, "wb") as fh:
            writer.write_invoices_xml(invoices, fh, grouped=True)
        del invoices
        print(f"file: {args.lines:,} lines, CSV {csv_path.stat().st_size / 1e6:.1f} MB,"
              f" XML {xml_path.stat().st_size / 1e6:.1f} MB")

        assert our_pass(csv_path) == dictreader_pass(csv_path) == args.lines
        best = best_times({"DictReader": dictreader_pass, "parser CSV": our_pass,
                           "parser XML": our_pass},
                          {"DictReader": csv_path, "parser CSV": csv_path,
                           "parser XML": xml_path}, args.repeat)
        base_wall, base_cpu = best["DictReader"]
        for name, (wall, cpu) in best.items():
            print(f"{name:<11} {args.lines / wall:>10,.0f} lines/s  ({wall:.2f} s wall,"
                  f" {cpu:.2f} s CPU)  ratio {wall / base_wall:.2f} wall, {cpu / base_cpu:.2f} CPU")
        ratio = best["parser CSV"][0] / base_wall
        print(f"CSV ratio to DictReader: {ratio:.2f} (target <= 3)")

        big, tiny = Path(tmp) / "big.csv", Path(tmp) / "tiny.csv"
        lines = write_big_csv(big, args.big_mb)
        write_big_csv(tiny, 0)
        _, _, baseline, _ = child_peak(tiny)
        rows, count, peak, seconds = child_peak(big)
        assert rows == lines
        print(f"big file: {big.stat().st_size / 1e6:.0f} MB, {rows:,} lines, {count:,} invoices,"
              f" parsed in {seconds:.1f} s")
        print(f"peak RSS: {peak / 1e6:.0f} MB (a child parsing a tiny file:"
              f" {baseline / 1e6:.0f} MB; target < 150 MB)")
        del big
        for path in (Path(tmp) / "big.csv", Path(tmp) / "invoices.xml"):
            path.unlink()
        hostile_ok = run_hostile(Path(tmp), args.hostile_mb) == 0
    return 0 if ratio <= 3 and peak < 150e6 and hostile_ok else 1


def run_hostile(directory: Path, megabytes: int) -> int:
    """Part 3; fails when a hostile file takes over 10 s or 150 MB, or stops the others."""
    ok = True
    print(f"hostile files ({megabytes} MB of the hostile part each, default limits):")
    for name, path in write_hostile(directory, megabytes).items():
        seconds, peak, outcome = hostile_probe(path)
        path.unlink()
        print(f"  {name:<24} {seconds:6.2f} s  peak RSS {peak / 1e6:4.0f} MB  {outcome}")
        ok = ok and seconds < 10 and peak < 150e6 and (
            outcome.startswith("2 invoices kept") or outcome.startswith("file refused"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
