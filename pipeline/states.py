"""Every status a source file or an invoice can hold, and the sets of them the code decides by.

Declared once here (the CHECK constraints in migrations/ are the database's copy). SQL takes
these as parameters (`status = ANY(%s)` with `list(SET)`, `THEN %s`), never as literals.
StrEnum members are plain strings: they compare, hash, format and serialise as their value.
"""

from __future__ import annotations

from enum import StrEnum


class FileStatus(StrEnum):
    """source_files.status"""

    FETCHED = "fetched"  # downloaded, waiting for its parse
    PARSED = "parsed"
    PARTIALLY_PARSED = "partially_parsed"  # some rows refused (parse_rejections)
    REJECTED = "rejected"  # refused as a whole


class InvoiceStatus(StrEnum):
    """invoices.status"""

    RECEIVED = "received"  # parsed, vendor not yet linked to an X3 supplier
    VENDOR_RESOLVED = "vendor_resolved"  # supplier known, not yet posted
    POSTING = "posting"  # marked before the create is sent: never re-sent blindly
    OUTCOME_UNKNOWN = "outcome_unknown"  # sent, no readable answer: X3 is asked first
    POSTED = "posted"
    FAILED = "failed"  # terminal until a replay
    NEEDS_REVIEW = "needs_review"  # a person decides


class CreateState(StrEnum):
    """supplier_creates.state: a supplier create, recorded before it is sent."""

    SENDING = "sending"  # recorded, sent or about to be: the reservation of its code
    UNKNOWN = "unknown"  # sent, no readable answer: looked up before any new create
    CREATED = "created"
    ADOPTED = "adopted"  # found in X3 after its answer was lost
    REFUSED = "refused"  # X3 said no: nothing was created
    NOT_SENT = "not_sent"  # X3 did not process it, or another vendor's create made it moot
    LOST = "lost"  # not in X3 once the in-flight window had passed


# A create still open: it may commit in X3, no second one is sent (unique indexes in 0007).
OPEN_CREATES = (CreateState.SENDING, CreateState.UNKNOWN)
# A create that ended with a supplier in X3.
MADE_CREATES = (CreateState.CREATED, CreateState.ADOPTED)

S = InvoiceStatus

# The create may be in X3 already: the poster looks it up before sending anything.
IN_FLIGHT = (S.POSTING, S.OUTCOME_UNKNOWN)
# End states: nothing more happens without a person (replay, vendor link).
SETTLED = (S.POSTED, S.FAILED, S.NEEDS_REVIEW)
# Waiting for the next step of process_invoice (what a re-delivered parse hands back).
TO_PROCESS = (S.RECEIVED, S.VENDOR_RESOLVED)
# Not yet sent to X3: a changed re-export may still replace the payload; a vendor matching
# several suppliers may still send it to review.
NOT_SENT = (S.RECEIVED, S.VENDOR_RESOLVED, S.FAILED)
# Gets (or keeps) the supplier link when its vendor is resolved.
LINKABLE = (S.RECEIVED, S.FAILED)
RESOLVABLE = NOT_SENT + IN_FLIGHT
POSTABLE = (S.VENDOR_RESOLVED, *IN_FLIGHT, S.FAILED)
# Unchanged for too long: its Celery message may be lost, the poll re-enqueues it.
STUCK = TO_PROCESS + IN_FLIGHT
REPLAYABLE = (S.FAILED, *STUCK)
# What an operator is asked to look at.
NEEDS_ATTENTION = (S.FAILED, S.NEEDS_REVIEW, S.OUTCOME_UNKNOWN)


def params(**values: object) -> dict[str, object]:
    """Query parameters naming every invoice status, for SQL that reads as the decision it
    makes: `CASE WHEN status = %(FAILED)s THEN %(RECEIVED)s ...`, plus the query's own values."""
    return {**{s.name: s for s in InvoiceStatus}, **values}
