-- Duration sums are 128-bit: the stored columns keep the low 63 bits, these the bits above them.
-- Rows written before hold sums below 2^63, so 0 is their high part.
ALTER TABLE resource_statistics_by_day ADD COLUMN duration_sum_us_high BIGINT NOT NULL DEFAULT 0;
ALTER TABLE resource_statistics_by_day ADD COLUMN success_duration_sum_us_high BIGINT NOT NULL DEFAULT 0;
