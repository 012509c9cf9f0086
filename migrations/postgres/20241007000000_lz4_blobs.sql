-- Breakdowns and histograms compressed with lz4 instead of pglz where the server was built with
-- it (PostgreSQL 14 or later): a busy customer's day holds kilobytes of them, and compressing
-- them with pglz was most of a commit's time (1,500 such days: 0.93 s, with lz4 0.23 s, in about
-- twice pglz's room). Values already stored keep their compression; a server without lz4 keeps
-- pglz.
DO $$
BEGIN
    ALTER TABLE resource_statistics_by_day ALTER COLUMN resources SET COMPRESSION lz4;
    ALTER TABLE resource_statistics_by_day ALTER COLUMN duration_histogram SET COMPRESSION lz4;
    ALTER TABLE customer_months ALTER COLUMN duration_histogram SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'breakdowns and histograms stay compressed with pglz: %', SQLERRM;
END
$$;
