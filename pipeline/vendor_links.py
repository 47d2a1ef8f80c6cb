"""Stampli vendor and X3 supplier: what a resolution knows of the vendor, the codes its id
gives, the links (vendor_links), who holds a code, the review a person settles (`mlc vendor
link`), and the count of suppliers created.

The matching itself (look-ups, creates) is pipeline.vendors.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

from psycopg2.extensions import cursor as Cursor

from pipeline import audit, db, taxid
from pipeline.audit import TaskContext
from pipeline.states import LINKABLE, NOT_SENT, OPEN_CREATES, InvoiceStatus
from pipeline.x3.client import NewSupplier, Supplier

CODE_MAX = 15
NAME_MAX = 35  # X3 BPSNAM
_X3_CODE = re.compile(r"[A-Z0-9_./-]{1,15}")
REVIEW_PREFIX = "vendor match:"


def vendor_key(vendor_id: str) -> str:
    """Vendor identity, normalised like the invoice dedup key (trimmed, case-folded)."""
    return vendor_id.strip().casefold()


def exact_code(vendor_id: str) -> str | None:
    """The vendor id as X3 would store it as a code, or None when it cannot be one."""
    code = vendor_id.strip().upper()
    return code if _X3_CODE.fullmatch(code) else None


def supplier_code(vendor_id: str) -> str:
    """The code a create uses: letters and digits of the vendor id, at most 15 characters;
    derived, so retries agree. Only for a create, after every look-up said no."""
    code = re.sub(r"[^A-Z0-9]", "", vendor_id.upper())
    if 0 < len(code) <= CODE_MAX:
        return code
    return "S" + hashlib.sha1(vendor_id.encode()).hexdigest()[:14].upper()  # noqa: S324


def candidate_codes(vendor_id: str) -> Iterator[str]:
    base = supplier_code(vendor_id)
    yield base
    for n in range(2, 1000):
        yield base[: CODE_MAX - len(str(n))] + str(n)


def eu_vat(tax_id: str | None, country: str | None) -> str | None:
    if tax_id and country and country != "US" and re.fullmatch(r"[A-Z]{2}[0-9A-Z]{2,13}", tax_id):
        return tax_id
    return None


class Vendor:
    """What a resolution knows of the vendor: the latest vendor file row, else the invoice."""

    def __init__(self, vendor_id: str, row: dict[str, Any] | None,
                 payload: dict[str, Any]) -> None:
        data = row["payload"] if row else {
            "vendor_id": vendor_id, "vendor_name": payload["vendor_name"],
            "tax_id": payload.get("vendor_tax_id"),
        }
        self.data = data
        self.id = vendor_id
        self.key = vendor_key(vendor_id)
        full = (data.get("vendor_name") or "").strip()
        self.name = full[:NAME_MAX]
        # Named in the create's audit row: X3 holds the name cut to its field.
        self.shortened = ([f"name cut to {NAME_MAX} characters (X3 BPSNAM limit; it had"
                           f" {len(full)})"] if len(full) > NAME_MAX else [])
        self.tax_id = (data.get("tax_id") or "").strip() or None
        self.country = data.get("country")
        _, rest = taxid.split_prefix(self.tax_id)
        self.tax_key = rest or None

    def has_tax_id(self, supplier: Supplier) -> bool:
        return any(taxid.same_tax_id(self.tax_id, t) for t in (supplier.tax_id,
                                                               supplier.eu_vat_id))

    def spellings(self) -> list[str]:
        return taxid.spellings(self.tax_id, self.country)

    def new_supplier(self, code: str | None) -> NewSupplier:
        v = self.data
        return NewSupplier(
            code=code, name=self.name, tax_id=self.tax_id,
            eu_vat_id=eu_vat(self.tax_id, v.get("country")), currency=v.get("currency"),
            address_lines=tuple(a for a in (v.get("address1"), v.get("address2")) if a),
            postal_code=v.get("postal_code"), city=v.get("city"), state=v.get("state"),
            country=v.get("country"),
        )


def taken(code: str, key: str) -> bool:
    with db.transaction() as cur:
        return taken_in(cur, code, key)


def taken_in(cur: Cursor, code: str, key: str) -> bool:
    """Is this X3 code another Stampli vendor's (linked, or being created for it)?"""
    cur.execute("SELECT 1 FROM vendor_links WHERE x3_supplier_code = %s"
                " AND stampli_vendor_id <> %s UNION ALL SELECT 1 FROM supplier_creates"
                " WHERE code = %s AND stampli_vendor_id <> %s AND state = ANY(%s)"
                " LIMIT 1", (code, key, code, key, list(OPEN_CREATES)))
    return cur.fetchone() is not None


def link_vendor(key: str, code: str, matched_by: str) -> None:
    with db.transaction() as cur:
        link_vendor_in(cur, key, code, matched_by)


def link_vendor_in(cur: Cursor, key: str, code: str, matched_by: str) -> None:
    cur.execute("INSERT INTO vendor_links (stampli_vendor_id, x3_supplier_code, matched_by)"
                " VALUES (%s,%s,%s) ON CONFLICT DO NOTHING", (key, code, matched_by))


def needs_review(ctx: TaskContext, invoice_id: int, vendor_id: str, codes: list[str],
                  by: str, detail: dict[str, Any]) -> None:
    codes = sorted(codes)
    reason = (f"{REVIEW_PREFIX} vendor {vendor_id} matches {len(codes)} X3 suppliers by {by}:"
              f" {', '.join(codes)}; link the right one: mlc vendor link {vendor_id} CODE")
    with db.transaction() as cur:
        cur.execute("UPDATE invoices SET status = %s, review_reason = %s,"
                    " updated_at = now() WHERE id = %s AND status = ANY(%s)",
                    (InvoiceStatus.NEEDS_REVIEW, reason, invoice_id, list(NOT_SENT)))
        audit.record(cur, "vendor_lookup", "error", ctx=ctx, invoice_id=invoice_id,
                     **{**detail, "vendor_id": vendor_id, "candidates": codes,
                        "reason": reason})
    return None


def link_by_hand(ctx: TaskContext, vendor_id: str, code: str, *, by: str,
                 reason: str | None = None) -> list[int]:
    """A person's decision: the vendor is this X3 supplier (matched_by 'manual'). Invoices held
    for review because the vendor matched several suppliers go back to be posted; returns
    their ids (the caller enqueues them)."""
    key = vendor_key(vendor_id)
    with db.transaction() as cur:
        cur.execute("INSERT INTO vendor_links (stampli_vendor_id, x3_supplier_code, matched_by)"
                    " VALUES (%s, %s, 'manual') ON CONFLICT (stampli_vendor_id) DO UPDATE SET"
                    " x3_supplier_code = EXCLUDED.x3_supplier_code, matched_by = 'manual'",
                    (key, code))
        cur.execute("UPDATE invoices SET status = %s, review_reason = NULL,"
                    " x3_supplier_code = NULL, updated_at = now() WHERE stampli_vendor_id = %s"
                    " AND status = %s AND x3_document_number IS NULL"
                    " AND review_reason LIKE %s RETURNING id",
                    (InvoiceStatus.RECEIVED, key, InvoiceStatus.NEEDS_REVIEW,
                     REVIEW_PREFIX + "%"))
        released = sorted(r["id"] for r in cur.fetchall())
        audit.record(cur, "vendor_lookup", "ok", ctx=ctx, vendor_id=vendor_id, code=code,
                     matched_by="manual", by=by, reason=reason, released=released)
    return released


def link_invoice(ctx: TaskContext, invoice_id: int, code: str, how: str, vendor_id: str) -> None:
    with db.transaction() as cur:
        link_invoice_in(cur, ctx, invoice_id, code, how, vendor_id)


def link_invoice_in(cur: Cursor, ctx: TaskContext, invoice_id: int, code: str, how: str,
                     vendor_id: str) -> None:
    cur.execute("UPDATE invoices SET x3_supplier_code = %s, updated_at = now(),"
                " status = CASE WHEN status = ANY(%s) THEN %s ELSE status END WHERE id = %s",
                (code, list(LINKABLE), InvoiceStatus.VENDOR_RESOLVED, invoice_id))
    if how == "linked":
        audit.record(cur, "vendor_lookup", "ok", ctx=ctx, invoice_id=invoice_id,
                     vendor_id=vendor_id, code=code, matched_by="vendor_links")


def created_count(cur: Cursor) -> int:
    """Suppliers the connector created in X3, including those whose answer was lost (adopted)."""
    cur.execute("SELECT count(*) AS n FROM vendor_links WHERE matched_by IN ('created', 'adopted')")
    return cur.fetchone()["n"]
