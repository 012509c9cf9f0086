-- What ingestion has done in all: lines read, lines rejected, and when it last committed.
-- Updated in the same transaction as the groups and offsets of every commit.
CREATE TABLE ingest_totals (
    id INTEGER PRIMARY KEY NOT NULL,
    lines BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    last_commit_unix DOUBLE PRECISION NOT NULL
);
INSERT INTO ingest_totals (id, lines, rejected, last_commit_unix) VALUES (1, 0, 0, 0);
