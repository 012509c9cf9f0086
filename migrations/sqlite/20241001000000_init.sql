-- One row per (customer, UTC day): the reference's columns, SPEC.md's extra fields, and the exact
-- mergeable state (status counts, integer sums, serialized duration histogram).
CREATE TABLE resource_statistics_by_day (
    customer_id TEXT NOT NULL,
    date TEXT NOT NULL,
    success_requests INTEGER NOT NULL,
    failed_requests INTEGER NOT NULL,
    uptime_percentage REAL NOT NULL,
    duration_mean REAL NOT NULL,
    duration_p50 REAL NOT NULL,
    duration_p99 REAL NOT NULL,
    total_requests INTEGER NOT NULL,
    status_1xx INTEGER NOT NULL,
    status_2xx INTEGER NOT NULL,
    status_3xx INTEGER NOT NULL,
    status_4xx INTEGER NOT NULL,
    status_5xx INTEGER NOT NULL,
    availability_percentage REAL NOT NULL,
    duration_p90 REAL NOT NULL,
    duration_p95 REAL NOT NULL,
    duration_max REAL NOT NULL,
    duration_sum_us INTEGER NOT NULL,
    success_duration_sum_us INTEGER NOT NULL,
    duration_histogram BLOB NOT NULL,
    PRIMARY KEY (customer_id, date)
);

-- How far each input file has been ingested: committed in the same transaction as its groups.
CREATE TABLE ingest_progress (
    path TEXT PRIMARY KEY NOT NULL,
    byte_offset INTEGER NOT NULL,
    head_hash INTEGER NOT NULL,
    head_len INTEGER NOT NULL
);
