-- Operator view of the export (issue 13): when each file still waiting for stability was
-- first seen, as a Camel user sees a read lock. Kept while the file grows; a new file under a
-- name already taken starts again.
ALTER TABLE remote_listing ADD COLUMN first_seen_at timestamptz NOT NULL DEFAULT now();
