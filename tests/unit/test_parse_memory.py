"""Memory stays flat as the file grows: parsing a ~20 MB invoice CSV holds a few invoices and one
small int per invoice key, never the rows. Measured as the peak RSS of a child process over a
child that parses a tiny file (same interpreter, same imports)."""

import io
import os
import subprocess
import sys
from pathlib import Path

from sandbox import writer

ROOT = Path(__file__).resolve().parents[2]

def write_csv(path: Path, lines: int) -> None:
    """Realistic rows, quickly: one block of synthetic invoices, repeated under new numbers."""
    block = io.StringIO(newline="")
    writer.write_invoices_csv(writer.synthetic_invoices(4000, seed=5), block, grouped=True)
    header, _, body = block.getvalue().partition("\r\n")
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(header + "\r\n")
        for k in range(lines // 4000):
            fh.write(body.replace("INV-", f"B{k}-"))


def peak_rss(path: Path) -> tuple[int, int, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout, not an installed copy
    probe = [sys.executable, "-m", "sandbox.parse_probe", str(path)]
    out = subprocess.run(probe, env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    rows, invoices, peak = map(int, out.split())
    return rows, invoices, peak


def test_peak_memory_is_far_below_the_file_size(tmp_path):
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    write_csv(small, 4000)
    write_csv(big, 108_000)
    size = big.stat().st_size
    assert size > 20_000_000
    _, _, baseline = peak_rss(small)
    rows, invoices, peak = peak_rss(big)
    assert rows == 108_000 and invoices > 30_000
    grown = peak - baseline
    # Holding the rows would take several times the file size; what grows here is the first
    # pass's count per invoice key (~120 bytes per invoice).
    assert grown < size / 4, f"peak grew by {grown / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"
    assert grown < invoices * 250
