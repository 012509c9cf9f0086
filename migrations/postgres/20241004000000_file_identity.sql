-- A file is identified by its device and inode (0 and 0 in rows written before: those fall back to
-- their first bytes), so a new file that begins like an ingested one is never taken for it.
ALTER TABLE ingest_progress ADD COLUMN device BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ingest_progress ADD COLUMN inode BIGINT NOT NULL DEFAULT 0;
-- For a compressed file that broke off (being written, or damaged): bytes of complete lines
-- decompressed past byte_offset, so a later run continues after them and counts nothing twice.
ALTER TABLE ingest_progress ADD COLUMN decoded_offset BIGINT NOT NULL DEFAULT 0;
-- A last line without a newline, counted by a batch run: its length, so that when the line turns
-- out to continue, the next run takes it back and reads it whole.
ALTER TABLE ingest_progress ADD COLUMN tail_len BIGINT NOT NULL DEFAULT 0;
-- Every name (row) of one file is found by its identity at each commit.
CREATE INDEX ingest_progress_by_file ON ingest_progress (device, inode);
-- FNV-1a of the 4 KiB before byte_offset (0: not recorded): a file rewritten in place behind
-- an unchanged beginning is a new file, not an append.
ALTER TABLE ingest_progress ADD COLUMN end_hash BIGINT NOT NULL DEFAULT 0;
