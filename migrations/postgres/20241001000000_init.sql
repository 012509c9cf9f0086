-- One row per (customer, UTC day): the reference's columns, SPEC.md's extra fields, and the exact
-- mergeable state (status counts, integer sums, serialized duration histogram).
CREATE TABLE resource_statistics_by_day (
    customer_id TEXT NOT NULL,
    date DATE NOT NULL,
    success_requests BIGINT NOT NULL,
    failed_requests BIGINT NOT NULL,
    uptime_percentage DOUBLE PRECISION NOT NULL,
    duration_mean DOUBLE PRECISION NOT NULL,
    duration_p50 DOUBLE PRECISION NOT NULL,
    duration_p99 DOUBLE PRECISION NOT NULL,
    total_requests BIGINT NOT NULL,
    status_1xx BIGINT NOT NULL,
    status_2xx BIGINT NOT NULL,
    status_3xx BIGINT NOT NULL,
    status_4xx BIGINT NOT NULL,
    status_5xx BIGINT NOT NULL,
    availability_percentage DOUBLE PRECISION NOT NULL,
    duration_p90 DOUBLE PRECISION NOT NULL,
    duration_p95 DOUBLE PRECISION NOT NULL,
    duration_max DOUBLE PRECISION NOT NULL,
    duration_sum_us BIGINT NOT NULL,
    success_duration_sum_us BIGINT NOT NULL,
    duration_histogram BYTEA NOT NULL,
    PRIMARY KEY (customer_id, date)
);

-- How far each input file has been ingested: committed in the same transaction as its groups.
CREATE TABLE ingest_progress (
    path TEXT PRIMARY KEY NOT NULL,
    byte_offset BIGINT NOT NULL,
    head_hash BIGINT NOT NULL,
    head_len BIGINT NOT NULL
);
