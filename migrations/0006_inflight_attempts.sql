-- Exactly once against a slow X3 (issue 11).
--
-- outcome_unknown: a create was sent and no readable answer came. X3 may still commit it, so
-- the invoice is settled only by a look-up; a second create is allowed only once the first can
-- no longer be in flight (attempt_started_at + MLC_X3_INFLIGHT_WINDOW).
ALTER TABLE invoices DROP CONSTRAINT invoices_status_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_status_check
    CHECK (status IN ('received', 'vendor_resolved', 'posting', 'outcome_unknown', 'posted',
                      'failed', 'needs_review'));
-- Start (database clock) of the last create whose outcome is not settled; NULL once settled.
ALTER TABLE invoices ADD COLUMN attempt_started_at timestamptz;
-- Task tries for this invoice, counted in the row so MLC_MAX_RETRIES holds across the poll's
-- re-enqueue of stuck rows and across replays (a replay resets it).
ALTER TABLE invoices ADD COLUMN tries integer NOT NULL DEFAULT 0;

ALTER TABLE vendor_links DROP CONSTRAINT vendor_links_matched_by_check;
ALTER TABLE vendor_links ADD CONSTRAINT vendor_links_matched_by_check
    CHECK (matched_by IN ('tax_id', 'code', 'exact_code', 'created', 'adopted', 'manual'));

-- One row per X3 HTTP call made for an invoice or a vendor (look-ups, creates, their retries):
-- when, which call, how long, what came of it. saleor's delivery attempts are the model.
CREATE TABLE x3_attempts (
    id                bigserial PRIMARY KEY,
    started_at        timestamptz NOT NULL,
    invoice_id        bigint,
    stampli_vendor_id text,
    task_id           text,
    call              text NOT NULL,         -- find_invoice, create_invoice, find_supplier_...
    try               integer NOT NULL DEFAULT 1,
    duration_ms       numeric(12, 1) NOT NULL,
    outcome           text NOT NULL CHECK (outcome IN ('ok', 'error', 'unknown')),
    http_status       integer,
    error             text
);
CREATE INDEX x3_attempts_invoice_idx ON x3_attempts (invoice_id, id);
CREATE INDEX x3_attempts_vendor_idx ON x3_attempts (stampli_vendor_id, id)
    WHERE stampli_vendor_id IS NOT NULL;

-- Rows an earlier version left after a create that may have reached X3: look them up first.
UPDATE invoices SET attempt_started_at = updated_at
    WHERE attempts > 0 AND status IN ('posting', 'failed', 'received', 'vendor_resolved');
