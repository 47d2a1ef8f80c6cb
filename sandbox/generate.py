"""Synthetic Stampli exports for tests and benchmarks: N invoices of L lines over V vendors.

Amounts reconcile (lines + tax = total), every account and cost center exists in the simulator's
default seed, and the expected content is returned so a test can compare X3 with the files.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

ACCOUNTS = ("6100", "6300", "6500")
COST_CENTERS = ("CC-PLANT1", "CC-PLANT2", "CC-ADMIN")
INVOICE_COLUMNS = (
    "stampli_invoice_id", "invoice_number", "vendor_id", "vendor_name", "invoice_date",
    "due_date", "currency", "invoice_total", "tax_amount", "po_number", "line_number",
    "line_description", "line_quantity", "line_amount", "gl_account", "cost_center",
    "approval_status", "approved_date", "approver",
)
VENDOR_COLUMNS = ("vendor_id", "vendor_name", "tax_id", "address1", "address2", "city", "state",
                  "postal_code", "country", "email", "payment_terms", "currency", "active")


@dataclass(frozen=True)
class ExpectedInvoice:
    vendor_code: str  # the X3 supplier code the connector derives (no tax-id match in the seed)
    number: str
    total: Decimal
    lines: tuple[tuple[int, str, Decimal], ...]  # (line number, account, amount)


def generate(directory: Path, *, invoices: int, lines: int = 2, vendors: int = 5,
             stamp: str = "20261110120000", seed: int = 7, prefix: str = "G"
             ) -> list[ExpectedInvoice]:
    """Write vendors_STAMP.csv and invoices_STAMP.csv into directory; return what X3 should hold."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    vendor_ids = [f"{prefix}V-{i:04d}" for i in range(vendors)]
    tmp_v = directory / f".vendors_{stamp}.csv.part"
    with tmp_v.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(VENDOR_COLUMNS)
        for i, vid in enumerate(vendor_ids):
            w.writerow([vid, f"Vendor {i} Ltd", f"TX-{prefix}-{i:06d}", f"{i} Main St", "",
                        "Springfield", "IL", "62701", "US", "", "NET30", "USD", "true"])
    expected = []
    tmp_i = directory / f".invoices_{stamp}.csv.part"
    with tmp_i.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(INVOICE_COLUMNS)
        for n in range(invoices):
            vid = vendor_ids[n % vendors]
            number = f"{prefix}-{stamp[-6:]}-{n:06d}"
            amounts = [Decimal(rng.randint(100, 500000)) / 100 for _ in range(lines)]
            tax = (sum(amounts) * Decimal("0.05")).quantize(Decimal("0.01"))
            total = sum(amounts) + tax
            rows = []
            for ln, amount in enumerate(amounts, start=1):
                account = ACCOUNTS[(n + ln) % len(ACCOUNTS)]
                rows.append((ln, account, amount))
                w.writerow([f"ST-{n}", number, vid, f"Vendor {n % vendors} Ltd", "2026-11-09",
                            "2026-12-09", "USD", f"{total:,.2f}", f"{tax}", "", ln,
                            f"item {ln}", "1", f"{amount}", account,
                            COST_CENTERS[n % len(COST_CENTERS)], "Approved", "2026-11-10", "a"])
            code = vid.replace("-", "").upper()
            expected.append(ExpectedInvoice(code, number, total, tuple(rows)))
    # Renamed into place complete, like a well-behaved exporter.
    tmp_v.rename(directory / f"vendors_{stamp}.csv")
    tmp_i.rename(directory / f"invoices_{stamp}.csv")
    return expected


def compare_with_x3(state: dict, expected: list[ExpectedInvoice]) -> dict[str, object]:
    """How X3 (the simulator's /_sim/state) differs from the files: counts, and a few examples."""
    from collections import Counter

    ours = {e.number for e in expected}
    invoices = [i for i in state["invoices"] if i["BPRVCR"] in ours]
    counts = Counter(i["BPRVCR"] for i in invoices)
    by_number = {i["BPRVCR"]: i for i in invoices}
    wrong = []
    for e in expected:
        got = by_number.get(e.number)
        if got is None:
            continue
        lines = [(ln["LIG"], ln["ACC"], Decimal(ln["AMTNOTLIN"])) for ln in got["BPSINVLIG"]]
        if got["BPR"] != e.vendor_code or Decimal(got["AMTATI"]) != e.total \
                or lines != list(e.lines):
            wrong.append(e.number)
    # One supplier per vendor: the same code twice, or the same name and tax id under two
    # codes (a create retried under another code, or an X3 that numbers suppliers itself).
    suppliers = Counter(s["BPSNUM"] for s in state["suppliers"])
    vendors = Counter((s.get("BPSNAM"), s.get("CRN") or s.get("EECNUM"))
                      for s in state["suppliers"])
    return {
        "expected": len(expected),
        "posted": len(counts),
        "missing": sorted(ours - set(counts)),
        "duplicated": sorted(n for n, c in counts.items() if c > 1),
        "wrong": wrong,
        "duplicated_suppliers": sorted(c for c, n in suppliers.items() if n > 1)
        + sorted(f"{name} ({tax})" for (name, tax), n in vendors.items() if n > 1),
    }
