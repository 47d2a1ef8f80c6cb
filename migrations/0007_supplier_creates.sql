-- Supplier creates (issue 11): a create is recorded before it is sent, so one whose answer never
-- came (timeout, lost connection, unreadable answer, worker killed) is looked up, adopted if
-- X3 has it, and sent again only once it can no longer be in flight (started_at +
-- MLC_X3_INFLIGHT_WINDOW, database clock). Settled rows stay as the history of each create.
CREATE TABLE supplier_creates (
    id                bigserial PRIMARY KEY,
    stampli_vendor_id text NOT NULL,             -- vendor key (trimmed, case-folded)
    code              text,                      -- the code sent; NULL when X3 numbers it
    name              text NOT NULL,             -- as sent (what a sequence look-up matches)
    tax_id            text,
    tax_key           text,                      -- compacted, without an EU VAT prefix
    known_codes       text[] NOT NULL DEFAULT '{}', -- same-named suppliers X3 held before
    started_at        timestamptz NOT NULL DEFAULT now(),
    state             text NOT NULL DEFAULT 'sending'
                      CHECK (state IN ('sending', 'unknown', 'created', 'adopted', 'refused',
                                       'not_sent', 'lost')),
    supplier_code     text,                      -- what X3 holds, once settled
    settled_at        timestamptz,
    error             text
);
-- Open = sent or being sent, outcome not settled. One per vendor, per code and per tax id:
-- the insert is the reservation that keeps two resolutions from creating one supplier twice.
CREATE UNIQUE INDEX supplier_creates_open_vendor ON supplier_creates (stampli_vendor_id)
    WHERE state IN ('sending', 'unknown');
CREATE UNIQUE INDEX supplier_creates_open_code ON supplier_creates (code)
    WHERE state IN ('sending', 'unknown') AND code IS NOT NULL;
CREATE UNIQUE INDEX supplier_creates_open_tax ON supplier_creates (tax_key)
    WHERE state IN ('sending', 'unknown') AND tax_key IS NOT NULL;
CREATE INDEX supplier_creates_tax_idx ON supplier_creates (tax_key, settled_at)
    WHERE tax_key IS NOT NULL;
