-- PostgreSQL compresses large values and this version makes it use lz4; SQLite stores them as
-- they are: nothing to change.
SELECT 1;
