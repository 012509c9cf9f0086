-- Each customer's months: the merge of the month's days' exact states (no breakdown by
-- resource), keyed by the month's first day and written in the same transaction as the days, so
-- that a summary of a long range reads a row a month and the days at its edges.
CREATE TABLE customer_months (
    customer_id TEXT NOT NULL,
    month DATE NOT NULL,
    status_1xx BIGINT NOT NULL,
    status_2xx BIGINT NOT NULL,
    status_3xx BIGINT NOT NULL,
    status_4xx BIGINT NOT NULL,
    status_5xx BIGINT NOT NULL,
    duration_sum_us BIGINT NOT NULL,
    duration_sum_us_high BIGINT NOT NULL,
    success_duration_sum_us BIGINT NOT NULL,
    success_duration_sum_us_high BIGINT NOT NULL,
    duration_histogram BYTEA NOT NULL,
    PRIMARY KEY (customer_id, month)
);
-- 1 once every stored day is in its month. Days stored before this table existed are folded into
-- it by the next ingestion's first commit; until then, reads use the days alone.
ALTER TABLE ingest_totals ADD COLUMN months_built BIGINT NOT NULL DEFAULT 0;
UPDATE ingest_totals SET months_built =
    CASE WHEN EXISTS (SELECT 1 FROM resource_statistics_by_day) THEN 0 ELSE 1 END;
