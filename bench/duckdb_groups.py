"""What a user would run instead of logstats: DuckDB computing the same groups from the same log.

    python bench/duckdb_groups.py LOG DB_FILE     (prints groups, seconds)

Per (customer, day): counts, success/failed, mean, exact nearest-rank p50/p99 (quantile_disc),
uptime, into a table on disk, two threads (this machine's cores).
"""
import sys
import time

import duckdb

log, db_file = sys.argv[1], sys.argv[2]
started = time.time()
con = duckdb.connect(db_file)
con.execute("SET threads = 2")
con.execute(
    f"""
    CREATE OR REPLACE TABLE groups AS
    SELECT customer, day,
           count(*) AS total_requests,
           count(*) FILTER (WHERE status BETWEEN 200 AND 299) AS success_requests,
           count(*) FILTER (WHERE status NOT BETWEEN 200 AND 299) AS failed_requests,
           avg(duration) AS duration_mean,
           quantile_disc(duration, 0.5) AS duration_p50,
           quantile_disc(duration, 0.99) AS duration_p99,
           100 * coalesce(sum(duration) FILTER (WHERE status BETWEEN 200 AND 299), 0)
               / nullif(sum(duration), 0) AS uptime_percentage
    FROM read_csv('{log}', delim = ' ', header = false,
                  columns = {{'day': 'DATE', 'time': 'VARCHAR', 'customer': 'VARCHAR',
                              'path': 'VARCHAR', 'status': 'INTEGER', 'duration': 'DECIMAL(18,6)'}})
    GROUP BY customer, day
    """
)
groups = con.execute("SELECT count(*) FROM groups").fetchone()[0]
con.close()
print(groups, round(time.time() - started, 2))
