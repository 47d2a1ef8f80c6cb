-- The finance console (console/): its users, login attempts (rate limiting), review
-- acknowledgements and pending mapping uploads; audit stage 'console' for what people do in it;
-- indexes that keep its pages fast on a large ledger (bench/console.py).

CREATE TABLE console_users (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    role          text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash text NOT NULL,              -- scrypt$n$r$p$salt$hash (hashlib.scrypt)
    -- Bumped by a password change or a disable: a session cookie carries the generation it
    -- was issued under, and an older one is refused.
    generation    integer NOT NULL DEFAULT 1,
    disabled_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Every login try, kept for the per-user and per-address rate limits.
CREATE TABLE console_login_attempts (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    username  text NOT NULL,
    address   text NOT NULL,
    ok        boolean NOT NULL
);
CREATE INDEX console_login_attempts_user_idx ON console_login_attempts (username, at);
CREATE INDEX console_login_attempts_address_idx ON console_login_attempts (address, at);

-- A person read a review and decided nothing is to be re-posted. Tied to the review reason it
-- answers: a later re-export (a new reason) comes back to the queue.
CREATE TABLE console_acknowledgements (
    id            bigserial PRIMARY KEY,
    invoice_id    bigint NOT NULL REFERENCES invoices(id),
    review_reason text NOT NULL,
    note          text NOT NULL,
    by_user       text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_acknowledgements_invoice_idx ON console_acknowledgements (invoice_id);

-- A mapping CSV uploaded and checked against X3, waiting for its author to save it.
CREATE TABLE console_uploads (
    id          bigserial PRIMARY KEY,
    by_user     text NOT NULL,
    kind        text NOT NULL,
    dimension_type text,
    content     text NOT NULL,
    valid       boolean NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    saved_at    timestamptz
);

ALTER TABLE audit_events DROP CONSTRAINT audit_events_stage_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_stage_check
    CHECK (stage IN ('file_fetch', 'file_parse', 'vendor_lookup', 'vendor_create',
                     'gl_validate', 'invoice_post', 'replay', 'poll', 'console'));

-- Keyset pages (newest first) under each filter, and the overview's charts.
CREATE INDEX invoices_status_id_idx ON invoices (status, id);
CREATE INDEX invoices_file_id_idx ON invoices (source_file_id, id);
CREATE INDEX invoices_vendor_id_idx ON invoices (stampli_vendor_id, id);
CREATE INDEX invoices_number_pattern_idx ON invoices (invoice_number text_pattern_ops);
CREATE INDEX invoices_created_idx ON invoices (created_at, id);
CREATE INDEX invoices_posted_at_idx ON invoices (posted_at) WHERE posted_at IS NOT NULL;
CREATE INDEX invoices_unsettled_idx ON invoices (created_at, id)
    WHERE status NOT IN ('posted', 'failed', 'needs_review');
CREATE INDEX invoices_failed_updated_idx ON invoices (updated_at)
    WHERE status = 'failed';
CREATE INDEX invoice_lines_location_idx ON invoice_lines (location) WHERE location IS NOT NULL;
CREATE INDEX audit_events_invoice_at_idx ON audit_events (invoice_id, at, id);
CREATE INDEX parse_rejections_file_idx ON parse_rejections (source_file_id, id);
CREATE INDEX polls_started_idx ON polls (started_at);
-- The Activity page: what people did (console actions and replays), newest first.
CREATE INDEX audit_events_people_idx ON audit_events (id) WHERE stage IN ('console', 'replay');
