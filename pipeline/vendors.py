"""Match each Stampli vendor to an X3 supplier; create one only when every look-up said no.

Matching order (the first that answers wins; how is kept in vendor_links.matched_by and in the
vendor_lookup / vendor_create audit rows):
1. vendor_links: matched before, or linked by a person ('manual').
2. tax id, compared normalised in CRN or EECNUM (pipeline.taxid): 'tax_id'. Two X3 suppliers
   with the vendor's tax id: the invoice goes to needs_review naming both, never a guess.
3. the vendor id as X3 stores codes (trimmed, upper case, `- _ . /` kept): 'exact_code', unless
   the supplier has another tax id or is linked to another Stampli vendor.
4. a create: 'created'. The code is derived from the vendor id (MLC_X3_SUPPLIER_NUMBERING=code)
   or left to X3 (sequence), and the link goes to the code X3 answers.
Steps 2 and 3 (and the first derived code) are one X3 query.

A create is recorded (supplier_creates) before it is sent. One whose outcome is unknown (no
answer, unreadable answer, worker killed) is looked up by every later resolution, by code or, when
X3 numbers suppliers, by tax id + name, and adopted when found ('adopted'). It is sent again only
once it can no longer be in flight: MLC_X3_INFLIGHT_WINDOW after its start (database clock).
Until then the resolution raises SupplierCreateInFlight, transient, with `retry_after`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2.errors
from psycopg2.extensions import cursor as Cursor

from pipeline import audit, db, locks, taxid
from pipeline.audit import TaskContext
from pipeline.config import settings
from pipeline.states import MADE_CREATES, OPEN_CREATES, RESOLVABLE
from pipeline.states import CreateState as C
from pipeline.vendor_links import (
    Vendor,
    candidate_codes,
    exact_code,
    link_invoice,
    link_invoice_in,
    link_vendor,
    link_vendor_in,
    needs_review,
    supplier_code,
    taken,
    taken_in,
    vendor_key,
)
from pipeline.x3.attempts import RecordingClient, recording
from pipeline.x3.client import Supplier, X3Client
from pipeline.x3.errors import (
    X3CreateInFlight,
    X3OutcomeUnknown,
    X3Unavailable,
    X3ValidationError,
)

SEQUENCE_PLACEHOLDER = "(X3 numbers it)"  # dry run in sequence mode: no code known yet
_CONTINUE = object()


class InvoiceNotResolvable(Exception):
    pass


class SupplierCreateInFlight(X3CreateInFlight):
    """An earlier create of this supplier may still commit in X3: look again later, never
    create a second time before `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float,
                 stale: dict[str, Any] | None = None) -> None:
        super().__init__(message, max(retry_after, 1.0))
        self.stale = stale  # another vendor's create, open past its window

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.retry_after, self.stale))


def resolve(ctx: TaskContext, invoice_id: int, client: X3Client) -> str | None:
    """Link the invoice's vendor to an X3 supplier; returns the supplier code, or None if the
    invoice no longer needs it (already posted, under review). Every X3 call it makes is in the
    invoice's attempt records, as the poster's are."""
    with recording(invoice_id=invoice_id, task_id=ctx.task_id):
        return _resolve(ctx, invoice_id, RecordingClient(client))


def _resolve(ctx: TaskContext, invoice_id: int, client: X3Client) -> str | None:
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
            link_invoice_in(cur, ctx, invoice_id, link["x3_supplier_code"], "linked",
                            vendor_id)
            return link["x3_supplier_code"]
    with locks.held(locks.vendor(key)):
        code = _resolve_locked(ctx, invoice_id, vendor_id, inv["payload"], client)
    return code


def _resolve_locked(ctx: TaskContext, invoice_id: int, vendor_id: str, payload: dict[str, Any],
                    client: X3Client) -> str | None:
    with db.transaction() as cur:
        cur.execute("SELECT x3_supplier_code FROM vendor_links WHERE stampli_vendor_id = %s",
                    (vendor_key(vendor_id),))
        link = cur.fetchone()
        cur.execute("SELECT payload FROM stampli_vendors WHERE vendor_id = %s",
                    (vendor_key(vendor_id),))
        row = cur.fetchone()
        pending = _open_create(cur, vendor_key(vendor_id))
    if link:
        link_invoice(ctx, invoice_id, link["x3_supplier_code"], "linked", vendor_id)
        return link["x3_supplier_code"]
    vendor = Vendor(vendor_id, row, payload)
    if pending:
        settled = _settle_open_create(ctx, invoice_id, vendor, pending, client)
        if settled is not _CONTINUE:
            return settled  # type: ignore[return-value]
    with db.transaction() as cur:
        cur.execute("SELECT now() AS t")
        looked_at = cur.fetchone()["t"]
    derived = supplier_code(vendor_id)
    exact = exact_code(vendor_id)
    candidates = client.find_suppliers(tax_ids=vendor.spellings(),
                                       codes=[c for c in (exact, derived) if c],
                                       names=[vendor.name] if vendor.name else [])
    by_tax = _unique(s for s in candidates if vendor.tax_id and vendor.has_tax_id(s))
    detail: dict[str, Any] = {"vendor_id": vendor_id, "tax_id": vendor.tax_id,
                              "exact_code": exact, "seen": sorted({s.code for s in candidates})}
    if len(by_tax) > 1:
        return needs_review(ctx, invoice_id, vendor_id, [s.code for s in by_tax],
                             f"tax id {vendor.tax_id}", detail)
    found, matched_by = (by_tax[0], "tax_id") if by_tax else (None, None)
    if found is None and exact:
        same = next((s for s in candidates if s.code == exact), None)
        if same and vendor.tax_id and (same.tax_id or same.eu_vat_id) and not vendor.has_tax_id(
                same):
            detail["skipped"] = f"{exact}: another tax id ({same.tax_id or same.eu_vat_id})"
        elif same and taken(same.code, vendor.key):
            detail["skipped"] = f"{exact}: linked to another Stampli vendor"
        elif same:
            found, matched_by = same, "exact_code"
    with db.transaction() as cur:
        audit.record(cur, "vendor_lookup", "ok", ctx=ctx, invoice_id=invoice_id, code=derived,
                     found=found.code if found else None, matched_by=matched_by, **detail)
    if found is None:
        return _create(ctx, invoice_id, vendor, candidates, looked_at, client)
    link_vendor(vendor.key, found.code, matched_by or "")
    link_invoice(ctx, invoice_id, found.code, matched_by or "", vendor_id)
    return found.code


def _unique(suppliers: Iterator[Supplier] | Any) -> list[Supplier]:
    return list({s.code: s for s in suppliers}.values())


# --- creates -------------------------------------------------------------------------------------


def _create(ctx: TaskContext, invoice_id: int, vendor: Vendor, seen: list[Supplier],
            looked_at: Any, client: X3Client) -> str | None:
    sequence = settings().x3_supplier_numbering == "sequence"
    if settings().dry_run:
        # Everything up to the X3 write: say what would be created, link nothing for good.
        code = SEQUENCE_PLACEHOLDER if sequence else _free_code(vendor, seen, client,
                                                                 reserve=False)[0]
        with db.transaction() as cur:
            audit.record(cur, "vendor_create", "skipped", ctx=ctx, invoice_id=invoice_id,
                         vendor_id=vendor.id, code=code, name=vendor.name, tax_id=vendor.tax_id,
                         dry_run=True, reason="dry run: supplier not created")
        link_invoice(ctx, invoice_id, code, "dry_run", vendor.id)
        return code
    code: str | None = None
    if sequence:
        # Same-named suppliers X3 holds now are not the one this create makes.
        known = sorted({s.code for s in seen if s.name == vendor.name})
        create_id = _reserve(vendor, None, known, client)
    else:
        code, create_id = _free_code(vendor, seen, client, reserve=True)
    # Another Stampli vendor with this tax id may have created the supplier since we looked.
    with db.transaction() as cur:
        cur.execute("SELECT supplier_code, tax_id FROM supplier_creates WHERE tax_key = %s"
                    " AND state = ANY(%s) AND settled_at >= %s",
                    (vendor.tax_key, list(MADE_CREATES), looked_at))
        theirs = next((r for r in cur.fetchall()
                       if taxid.same_tax_id(vendor.tax_id, r["tax_id"])), None)
        if theirs:
            _settle(cur, create_id, C.NOT_SENT, None, "a supplier with this tax id was just"
                    " created for another Stampli vendor")
    if theirs:
        link_vendor(vendor.key, theirs["supplier_code"], "tax_id")
        link_invoice(ctx, invoice_id, theirs["supplier_code"], "tax_id", vendor.id)
        return theirs["supplier_code"]
    new = vendor.new_supplier(code)
    try:
        created = client.create_supplier(new)
    except X3OutcomeUnknown as exc:
        with db.transaction() as cur:
            cur.execute("UPDATE supplier_creates SET state = %s, error = %s WHERE id = %s",
                        (C.UNKNOWN, str(exc), create_id))
            audit.record(cur, "vendor_create", "error", ctx=ctx, invoice_id=invoice_id,
                         vendor_id=vendor.id, code=new.code, error=str(exc),
                         outcome_unknown=True)
        raise
    except (X3ValidationError, X3Unavailable) as exc:
        # Refused, or not processed: nothing was created, the reservation ends.
        with db.transaction() as cur:
            _settle(cur, create_id, C.REFUSED if isinstance(exc, X3ValidationError)
                    else C.NOT_SENT, None, str(exc))
            audit.record(cur, "vendor_create", "error", ctx=ctx, invoice_id=invoice_id,
                         vendor_id=vendor.id, code=new.code, error=str(exc))
        raise
    with db.transaction() as cur:
        _settle(cur, create_id, C.CREATED, created.code)
        link_vendor_in(cur, vendor.key, created.code, "created")
        audit.record(cur, "vendor_create", "ok", ctx=ctx, invoice_id=invoice_id,
                     vendor_id=vendor.id, code=created.code, name=new.name, tax_id=vendor.tax_id,
                     numbering="sequence" if sequence else "code",
                     **({"shortened": vendor.shortened} if vendor.shortened else {}))
    link_invoice(ctx, invoice_id, created.code, "created", vendor.id)
    return created.code


def _free_code(vendor: Vendor, seen: list[Supplier], client: X3Client, *,
               reserve: bool) -> tuple[str, int]:
    """The first derived code that X3 does not hold and no other Stampli vendor has or is
    creating, and its reservation (a supplier_creates row id; 0 when not `reserve`)."""
    in_x3 = {s.code for s in seen}
    for n, code in enumerate(candidate_codes(vendor.id)):
        if n > 0 and code not in in_x3 and client.find_supplier_by_code(code) is not None:
            in_x3.add(code)
        if code in in_x3 or taken(code, vendor.key):
            continue
        if not reserve:
            return code, 0
        try:
            return code, _reserve(vendor, code, [], client)
        except _CodeTaken:
            continue
    raise X3ValidationError(f"no free X3 supplier code derived from {vendor.id!r}")


class _CodeTaken(Exception):
    pass


def _reserve(vendor: Vendor, code: str | None, known: list[str], client: X3Client) -> int:
    """Record the create before it is sent; the unique indexes make this the reservation."""
    try:
        return _insert_create(vendor, code, known)
    except SupplierCreateInFlight as exc:
        if exc.stale is None:
            raise
        _settle_stale(exc.stale, client)
        return _insert_create(vendor, code, known)


def _insert_create(vendor: Vendor, code: str | None, known: list[str]) -> int:
    try:
        with db.transaction() as cur:
            cur.execute("INSERT INTO supplier_creates (stampli_vendor_id, code, name, tax_id,"
                        " tax_key, known_codes) VALUES (%s,%s,%s,%s,%s,%s) RETURNING id",
                        (vendor.key, code, vendor.name, vendor.tax_id, vendor.tax_key, known))
            create_id = cur.fetchone()["id"]
            if code and taken_in(cur, code, vendor.key):
                raise _CodeTaken(code)  # linked meanwhile: the insert rolls back
            return create_id
    except psycopg2.errors.UniqueViolation as exc:
        constraint = exc.diag.constraint_name
        if constraint == "supplier_creates_open_code":
            raise _CodeTaken(code) from None
        # Another Stampli vendor with this tax id (or, unlocked, this vendor) is creating it.
        with db.transaction() as cur:
            cur.execute("SELECT *, GREATEST(0, %s - EXTRACT(EPOCH FROM now() -"
                        " started_at))::float AS left FROM supplier_creates WHERE state = ANY(%s)"
                        " AND (tax_key = %s OR stampli_vendor_id = %s) LIMIT 1",
                        (settings().x3_inflight_window, list(OPEN_CREATES), vendor.tax_key,
                         vendor.key))
            other = cur.fetchone()
        left = other["left"] if other else 1.0
        raise SupplierCreateInFlight(
            f"a supplier with tax id {vendor.tax_id} is being created for Stampli vendor"
            f" {other['stampli_vendor_id'] if other else '?'}: look again once it is settled",
            min(left, settings().x3_timeout + 1),
            stale=other if other and left <= 0 else None) from None


def _settle(cur: Cursor, create_id: int, state: C, code: str | None,
            error: str | None = None) -> None:
    # Only an open create is settled: two resolutions settling one agree, the first one wins.
    cur.execute("UPDATE supplier_creates SET state = %s, supplier_code = %s, settled_at = now(),"
                " error = COALESCE(%s, error) WHERE id = %s AND state = ANY(%s)",
                (state, code, error, create_id, list(OPEN_CREATES)))


def _open_create(cur: Cursor, key: str) -> dict[str, Any] | None:
    cur.execute("SELECT *, EXTRACT(EPOCH FROM now() - started_at)::float AS age"
                " FROM supplier_creates WHERE stampli_vendor_id = %s"
                " AND state = ANY(%s)", (key, list(OPEN_CREATES)))
    return cur.fetchone()


def _settle_open_create(ctx: TaskContext, invoice_id: int, vendor: Vendor,
                        pending: dict[str, Any], client: X3Client) -> Any:
    """An earlier create of this vendor's supplier whose outcome is unknown: adopt what X3
    holds, wait while it may still commit, or let a new create go once it cannot."""
    hits = _made_by(pending, client, vendor.country)
    if len(hits) > 1:
        return needs_review(ctx, invoice_id, vendor.id, [s.code for s in hits],
                             f"tax id {pending['tax_id']} and name {pending['name']!r} after a"
                             " create whose answer was lost", {"create_id": pending["id"]})
    if hits:
        code = hits[0].code
        with db.transaction() as cur:
            _settle(cur, pending["id"], C.ADOPTED, code)
            link_vendor_in(cur, vendor.key, code, "adopted")
            audit.record(cur, "vendor_create", "ok", ctx=ctx, invoice_id=invoice_id,
                         vendor_id=vendor.id, code=code, name=pending["name"],
                         tax_id=pending["tax_id"], adopted=True,
                         started_at=pending["started_at"])
        link_invoice(ctx, invoice_id, code, "adopted", vendor.id)
        return code
    window = settings().x3_inflight_window
    if pending["age"] < window:
        left = window - pending["age"]
        with db.transaction() as cur:
            audit.record(cur, "vendor_create", "skipped", ctx=ctx, invoice_id=invoice_id,
                         vendor_id=vendor.id, code=pending["code"], in_flight=True,
                         retry_after=round(left, 1),
                         reason="an earlier create may still commit in X3: not sent again")
        raise SupplierCreateInFlight(
            f"supplier create for vendor {vendor.id!r} started {pending['age']:.0f} s ago is"
            f" not in X3 yet; it may still commit (MLC_X3_INFLIGHT_WINDOW={window:.0f} s)", left)
    with db.transaction() as cur:  # it can no longer commit: it never will
        _settle(cur, pending["id"], C.LOST, None, "not in X3 after the in-flight window")
    return _CONTINUE


def _made_by(pending: dict[str, Any], client: X3Client, country: str | None) -> list[Supplier]:
    """What X3 holds that this recorded create made: the supplier with its code, or, when X3
    numbered it, with its tax id and name and not among the same-named ones seen before."""
    if pending["code"]:
        found = client.find_supplier_by_code(pending["code"])
        return [found] if found else []
    seen = client.find_suppliers(tax_ids=taxid.spellings(pending["tax_id"], country),
                                 names=[pending["name"]])
    return _unique(
        s for s in seen if s.name == pending["name"] and s.code not in pending["known_codes"]
        and (any(taxid.same_tax_id(pending["tax_id"], t) for t in (s.tax_id, s.eu_vat_id))
             if pending["tax_id"] else not (s.tax_id or s.eu_vat_id))
        and not taken(s.code, pending["stampli_vendor_id"]))


def _settle_stale(other: dict[str, Any], client: X3Client) -> None:
    """Another vendor's create, open past its in-flight window (its invoices stopped trying):
    settle it as that vendor's next resolution would, so it blocks nobody for ever."""
    hits = _made_by(other, client, None)
    with db.transaction() as cur:
        if len(hits) == 1:
            _settle(cur, other["id"], C.ADOPTED, hits[0].code)
            cur.execute("INSERT INTO vendor_links (stampli_vendor_id, x3_supplier_code,"
                        " matched_by) VALUES (%s, %s, 'adopted') ON CONFLICT DO NOTHING",
                        (other["stampli_vendor_id"], hits[0].code))
        elif not hits:
            _settle(cur, other["id"], C.LOST, None, "not in X3 after the in-flight window")
