-- File contents as Postgres large objects: written and read in chunks, so a 100 MB export
-- never sits whole in a worker's memory. `content` stays for rows stored before this.
ALTER TABLE source_files ALTER COLUMN content DROP NOT NULL;
ALTER TABLE source_files ADD COLUMN content_oid oid;
