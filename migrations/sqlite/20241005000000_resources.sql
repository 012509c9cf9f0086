-- A day's requests by resource (its path, normalised): every resource's exact state, encoded.
-- NULL when none of its requests was recorded with its resource (rows written before, or
-- ingested with the breakdown switched off).
ALTER TABLE resource_statistics_by_day ADD COLUMN resources BLOB;
