-- Each customer's months: the merge of the month's days' exact states (no breakdown by
-- resource), keyed by the month's first day and written in the same transaction as the days, so
-- that a summary of a long range reads a row a month and the days at its edges.
CREATE TABLE customer_months (
    customer_id TEXT NOT NULL,
    month TEXT NOT NULL,
    status_1xx INTEGER NOT NULL,
    status_2xx INTEGER NOT NULL,
    status_3xx INTEGER NOT NULL,
    status_4xx INTEGER NOT NULL,
    status_5xx INTEGER NOT NULL,
    duration_sum_us INTEGER NOT NULL,
    duration_sum_us_high INTEGER NOT NULL,
    success_duration_sum_us INTEGER NOT NULL,
    success_duration_sum_us_high INTEGER NOT NULL,
    duration_histogram BLOB NOT NULL,
    PRIMARY KEY (customer_id, month)
);
-- 1 once every stored day is in its month. Days stored before this table existed are folded into
-- it by the next ingestion's first commit; until then, reads use the days alone.
ALTER TABLE ingest_totals ADD COLUMN months_built INTEGER NOT NULL DEFAULT 0;
UPDATE ingest_totals SET months_built =
    CASE WHEN EXISTS (SELECT 1 FROM resource_statistics_by_day) THEN 0 ELSE 1 END;
