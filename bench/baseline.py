"""What a team would otherwise write: one process, `csv` and `requests`, one invoice at a time.

No queue, no database, no dedup, no audit, no retries: read the vendors file, create each
supplier, then post each invoice. Used by bench/e2e.py as the yardstick.
"""

from __future__ import annotations

import csv
import time
from collections import OrderedDict
from pathlib import Path

import requests


def _cost_centers(path: Path) -> dict[str, tuple[str, str]]:
    with path.open(newline="") as fh:
        return {r["stampli_code"]: (r["dimension_type"], r["dimension_value"])
                for r in csv.DictReader(fh)}


def run(url: str, export_dir: Path, cc_map: Path, *, user: str = "admin",
        password: str = "admin", limit: int | None = None) -> dict[str, float]:
    """Post every invoice in export_dir (at most `limit`); returns wall and CPU seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    root = f"{url}/api1/x3/erp/SEED"
    session = requests.Session()
    session.auth = (user, password)
    ccs = _cost_centers(cc_map)
    invoices: OrderedDict[tuple[str, str], list[dict[str, str]]] = OrderedDict()
    for path in sorted(export_dir.glob("invoices_*.csv")):
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                invoices.setdefault((row["vendor_id"], row["invoice_number"]), []).append(row)
    chosen = list(invoices.items())[:limit] if limit else list(invoices.items())
    needed = {vid for (vid, _), _ in chosen}
    suppliers = 0
    for path in sorted(export_dir.glob("vendors_*.csv")):
        with path.open(newline="") as fh:
            for v in csv.DictReader(fh):
                if v["vendor_id"] not in needed:
                    continue
                body = {"BPSNUM": v["vendor_id"].replace("-", "").upper(),
                        "BPSNAM": v["vendor_name"][:35], "CUR": v["currency"],
                        "CRN": v["tax_id"], "BPAADD": "A01",
                        "BPADDRESS": [{"BPAADD": "A01", "POSCOD": v["postal_code"],
                                       "CTY": v["city"], "CRY": v["country"]}]}
                r = session.post(f"{root}/BPSUPPLIER",
                                 params={"representation": "BPSUPPLIER.$create"}, json=body)
                r.raise_for_status()
                suppliers += 1
    t_suppliers = time.perf_counter() - t0
    for (vid, number), rows in chosen:
        head = rows[0]
        lines = []
        for r in rows:
            die, cce = ccs.get(r["cost_center"], ("CCT", r["cost_center"]))
            lines.append({"LIG": int(r["line_number"]), "ACC": r["gl_account"],
                          "AMTNOTLIN": r["line_amount"], "QTY": r["line_quantity"],
                          "DES": r["line_description"][:30], "DIE": [die], "CCE": [cce]})
        body = {"BPR": vid.replace("-", "").upper(), "BPRVCR": number,
                "BPRDAT": head["invoice_date"], "ACCDAT": head["invoice_date"],
                "DUDDAT": head["due_date"], "INVTYP": "INV", "CUR": head["currency"],
                "FCY": "US011", "CPY": "US01", "AMTATI": head["invoice_total"].replace(",", ""),
                "DES": f"Stampli {head['stampli_invoice_id']}", "BPSINVLIG": lines}
        r = session.post(f"{root}/BPSINVOICE", params={"representation": "BPSINVOICE.$create"},
                         json=body)
        r.raise_for_status()
    return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0,
            "invoices": len(chosen), "suppliers": suppliers, "supplier_seconds": t_suppliers,
            "all_suppliers": len({vid for vid, _ in invoices})}
