-- ml-connector data model (see ../shared/DESIGN.md). Postgres is the source of truth:
-- every task receives ids and re-reads its state from these tables.

CREATE TABLE connections (
    name        text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('stampli_sftp', 'x3_rest', 'x3_graphql')),
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,   -- non-secret: host, port, user, host key ...
    secret      bytea,                               -- MultiFernet token of a JSON object
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- What each poll saw, so a file is taken only once its size and mtime stop changing.
CREATE TABLE remote_listing (
    connection  text NOT NULL,
    path        text NOT NULL,
    size        bigint NOT NULL,
    mtime       bigint NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection, path)
);

CREATE TABLE polls (
    id          bigserial PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome     text,
    listed      integer NOT NULL DEFAULT 0,
    fetched     integer NOT NULL DEFAULT 0,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE source_files (
    id            bigserial PRIMARY KEY,
    connection    text NOT NULL,
    path          text NOT NULL,
    remote_path   text,                     -- where the file is now (processed/, failed/ ...)
    kind          text NOT NULL CHECK (kind IN ('invoices', 'vendors')),
    size          bigint NOT NULL,
    mtime         bigint NOT NULL,
    sha256        text NOT NULL UNIQUE,
    content       bytea NOT NULL,
    status        text NOT NULL DEFAULT 'fetched'
                  CHECK (status IN ('fetched', 'parsed', 'partially_parsed', 'rejected')),
    rows_total    integer NOT NULL DEFAULT 0,
    rows_rejected integer NOT NULL DEFAULT 0,
    invoices_accepted integer NOT NULL DEFAULT 0,
    invoices_rejected integer NOT NULL DEFAULT 0,
    error         text,
    fetched_at    timestamptz NOT NULL DEFAULT now(),
    parsed_at     timestamptz,
    UNIQUE (connection, path, size, mtime)
);

CREATE TABLE stampli_vendors (
    vendor_id     text PRIMARY KEY,
    name          text NOT NULL,
    tax_id        text,
    payload       jsonb NOT NULL,
    source_file_id bigint REFERENCES source_files(id),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE vendor_links (
    stampli_vendor_id text PRIMARY KEY,
    x3_supplier_code  text NOT NULL,
    matched_by        text NOT NULL CHECK (matched_by IN ('tax_id', 'code', 'created', 'manual')),
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE invoices (
    id                bigserial PRIMARY KEY,
    stampli_vendor_id text NOT NULL,          -- normalised: trimmed, case-folded
    invoice_number    text NOT NULL,          -- normalised: trimmed, case-folded
    source_file_id    bigint NOT NULL REFERENCES source_files(id),
    status            text NOT NULL DEFAULT 'received'
                      CHECK (status IN ('received', 'vendor_resolved', 'posting', 'posted',
                                        'failed', 'needs_review')),
    attempts          integer NOT NULL DEFAULT 0,
    last_error        text,
    x3_supplier_code  text,
    x3_document_number text,
    payload           jsonb NOT NULL,         -- normalised invoice (header + lines), decimals as strings
    payload_sha256    text NOT NULL,
    review_reason     text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    posted_at         timestamptz,
    UNIQUE (stampli_vendor_id, invoice_number)
);
CREATE INDEX invoices_status_idx ON invoices (status);

CREATE TABLE invoice_lines (
    invoice_id    bigint NOT NULL REFERENCES invoices(id) ON DELETE CASCADE,
    line_number   integer NOT NULL,
    description   text,
    quantity      numeric(18, 4) NOT NULL,
    amount        numeric(18, 2) NOT NULL,
    gl_account    text NOT NULL,
    cost_center   text,
    location      text,
    PRIMARY KEY (invoice_id, line_number)
);

-- Invoices a parse refused: file, line numbers, field and reason. Nothing is lost.
CREATE TABLE parse_rejections (
    id              bigserial PRIMARY KEY,
    source_file_id  bigint NOT NULL REFERENCES source_files(id),
    vendor_id       text,
    invoice_number  text,
    line_numbers    integer[] NOT NULL DEFAULT '{}',
    field           text,
    reason          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gl_account_map (
    stampli_code  text PRIMARY KEY,
    x3_account    text NOT NULL
);

CREATE TABLE cost_center_map (
    stampli_code    text PRIMARY KEY,
    dimension_type  text NOT NULL,
    dimension_value text NOT NULL
);

CREATE TABLE audit_events (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    stage         text NOT NULL CHECK (stage IN ('file_fetch', 'file_parse', 'vendor_lookup',
                                                 'vendor_create', 'gl_validate', 'invoice_post',
                                                 'replay', 'poll')),
    outcome       text NOT NULL CHECK (outcome IN ('ok', 'skipped', 'error')),
    source_file_id bigint,
    invoice_id    bigint,
    task_id       text,
    attempt       integer,
    detail        jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_events_invoice_idx ON audit_events (invoice_id);
CREATE INDEX audit_events_file_idx ON audit_events (source_file_id);

CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_events_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
