"""Match each Stampli vendor to an X3 supplier (tax id, then code), creating it if missing.

One resolution per vendor at a time (advisory lock), so two workers never create it twice; a
create whose answer was lost is found by code on the next attempt.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

from psycopg2.extensions import cursor as Cursor

from pipeline import audit, db, locks
from pipeline.audit import TaskContext
from pipeline.config import settings
from pipeline.x3.client import NewSupplier, Supplier, X3Client
from pipeline.x3.errors import X3ValidationError

RESOLVABLE = ("received", "vendor_resolved", "failed", "posting", "outcome_unknown")


class InvoiceNotResolvable(Exception):
    pass


def vendor_key(vendor_id: str) -> str:
    """Vendor identity, normalised like the invoice dedup key (trimmed, case-folded)."""
    return vendor_id.strip().casefold()


def supplier_code(vendor_id: str) -> str:
    """X3 supplier codes are upper case, at most 15 characters; derived, so retries agree."""
    code = re.sub(r"[^A-Z0-9]", "", vendor_id.upper())
    if 0 < len(code) <= 15:
        return code
    return "S" + hashlib.sha1(vendor_id.encode()).hexdigest()[:14].upper()  # noqa: S324


def _eu_vat(tax_id: str | None, country: str | None) -> str | None:
    if tax_id and country and country != "US" and re.fullmatch(r"[A-Z]{2}[0-9A-Z]{2,13}", tax_id):
        return tax_id
    return None


def resolve(ctx: TaskContext, invoice_id: int, client: X3Client) -> str | None:
    """Link the invoice's vendor to an X3 supplier; returns the supplier code, or None if the
    invoice no longer needs it (already posted, under review)."""
    with db.transaction() as cur:
        cur.execute("SELECT id, status, payload, x3_supplier_code, attempt_started_at"
                    " FROM invoices WHERE id = %s", (invoice_id,))
        inv = cur.fetchone()
        if inv is None:
            raise InvoiceNotResolvable(f"invoice {invoice_id} does not exist")
        if inv["status"] not in RESOLVABLE:
            return None
        if inv["attempt_started_at"] is not None and inv["x3_supplier_code"]:
            # A create may be in X3 already: the poster looks it up before anything that
            # could fail the invoice, vendor resolution included.
            return inv["x3_supplier_code"]
        vendor_id = inv["payload"]["vendor_id"].strip()
        # Locked by the derived supplier code, not the vendor id: vendors whose ids derive the
        # same code ("ZZ-9", "zz9") must not both find the supplier one of them is creating.
        key = supplier_code(vendor_id)
        # Most invoices find their vendor already linked: link them in this one transaction.
        # The lock below only guards against creating a supplier twice.
        cur.execute("SELECT x3_supplier_code FROM vendor_links WHERE stampli_vendor_id = %s",
                    (vendor_key(vendor_id),))
        link = cur.fetchone()
        if link:
            _link_invoice_in(cur, ctx, invoice_id, link["x3_supplier_code"], "linked",
                             vendor_id)
            return link["x3_supplier_code"]
    with locks.held(locks.vendor(key)):
        code = _resolve_locked(ctx, invoice_id, vendor_id, inv["payload"], client)
    return code


def _resolve_locked(ctx: TaskContext, invoice_id: int, vendor_id: str, payload: dict[str, Any],
                    client: X3Client) -> str:
    with db.transaction() as cur:
        cur.execute("SELECT x3_supplier_code FROM vendor_links WHERE stampli_vendor_id = %s",
                    (vendor_key(vendor_id),))
        link = cur.fetchone()
        cur.execute("SELECT payload FROM stampli_vendors WHERE vendor_id = %s",
                    (vendor_key(vendor_id),))
        row = cur.fetchone()
    if link:
        _link_invoice(ctx, invoice_id, link["x3_supplier_code"], "linked", vendor_id)
        return link["x3_supplier_code"]
    vendor = row["payload"] if row else {
        "vendor_id": vendor_id, "vendor_name": payload["vendor_name"],
        "tax_id": payload.get("vendor_tax_id"),
    }
    tax_id = (vendor.get("tax_id") or "").strip() or None
    found, matched_by = None, None
    if tax_id:
        found, matched_by = client.find_supplier_by_tax_id(tax_id), "tax_id"
    code = supplier_code(vendor_id)
    if found is None:
        code, found = _free_or_own_code(vendor_id, tax_id, client)
        matched_by = "code"
    with db.transaction() as cur:
        audit.record(cur, "vendor_lookup", "ok", ctx=ctx, invoice_id=invoice_id,
                     vendor_id=vendor_id, tax_id=tax_id, code=code,
                     found=found.code if found else None, matched_by=matched_by if found else None)
    if found is None:
        new = NewSupplier(
            code=code, name=vendor["vendor_name"][:35], tax_id=tax_id,
            eu_vat_id=_eu_vat(tax_id, vendor.get("country")), currency=vendor.get("currency"),
            address_lines=tuple(a for a in (vendor.get("address1"), vendor.get("address2")) if a),
            postal_code=vendor.get("postal_code"), city=vendor.get("city"),
            state=vendor.get("state"), country=vendor.get("country"),
        )
        if settings().dry_run:
            # Everything up to the X3 write: say what would be created, link nothing for good.
            with db.transaction() as cur:
                audit.record(cur, "vendor_create", "skipped", ctx=ctx, invoice_id=invoice_id,
                             vendor_id=vendor_id, code=code, name=new.name, tax_id=tax_id,
                             dry_run=True, reason="dry run: supplier not created")
            _link_invoice(ctx, invoice_id, code, "dry_run", vendor_id)
            return code
        try:
            found = client.create_supplier(new)
        except X3ValidationError as exc:
            with db.transaction() as cur:
                audit.record(cur, "vendor_create", "error", ctx=ctx, invoice_id=invoice_id,
                             vendor_id=vendor_id, code=code, error=str(exc))
            raise
        matched_by = "created"
        with db.transaction() as cur:
            audit.record(cur, "vendor_create", "ok", ctx=ctx, invoice_id=invoice_id,
                         vendor_id=vendor_id, code=found.code, name=new.name, tax_id=tax_id)
    with db.transaction() as cur:
        cur.execute("INSERT INTO vendor_links (stampli_vendor_id, x3_supplier_code, matched_by)"
                    " VALUES (%s,%s,%s) ON CONFLICT DO NOTHING",
                    (vendor_key(vendor_id), found.code, matched_by))
    _link_invoice(ctx, invoice_id, found.code, matched_by or "", vendor_id)
    return found.code


def candidate_codes(vendor_id: str) -> Iterator[str]:
    base = supplier_code(vendor_id)
    yield base
    for n in range(2, 1000):
        yield base[: 15 - len(str(n))] + str(n)


def _free_or_own_code(vendor_id: str, tax_id: str | None, client: X3Client
                      ) -> tuple[str, Supplier | None]:
    """The first derived code that is this vendor's in X3, or free. A code linked to another
    Stampli vendor, or held in X3 by a supplier with another tax id, is someone else's."""
    for code in candidate_codes(vendor_id):
        with db.transaction() as cur:
            cur.execute("SELECT 1 FROM vendor_links WHERE x3_supplier_code = %s"
                        " AND stampli_vendor_id <> %s", (code, vendor_key(vendor_id)))
            taken = cur.fetchone() is not None
        if taken:
            continue
        found = client.find_supplier_by_code(code)
        if found and tax_id and found.tax_id and found.tax_id != tax_id:
            continue
        return code, found
    raise X3ValidationError(f"no free X3 supplier code derived from {vendor_id!r}")


def _link_invoice(ctx: TaskContext, invoice_id: int, code: str, how: str, vendor_id: str) -> None:
    with db.transaction() as cur:
        _link_invoice_in(cur, ctx, invoice_id, code, how, vendor_id)


def _link_invoice_in(cur: Cursor, ctx: TaskContext, invoice_id: int, code: str, how: str,
                     vendor_id: str) -> None:
    cur.execute("UPDATE invoices SET x3_supplier_code = %s, updated_at = now(),"
                " status = CASE WHEN status IN ('received', 'failed') THEN 'vendor_resolved'"
                " ELSE status END WHERE id = %s", (code, invoice_id))
    if how == "linked":
        audit.record(cur, "vendor_lookup", "ok", ctx=ctx, invoice_id=invoice_id,
                     vendor_id=vendor_id, code=code, matched_by="vendor_links")


def created_count(cur: Cursor) -> int:
    cur.execute("SELECT count(*) AS n FROM vendor_links WHERE matched_by = 'created'")
    return cur.fetchone()["n"]
