#!/usr/bin/env bash
# The bulk export against SQLite's own CSV dump of the same rows, in the same run: a month of
# every customer of $CUSTOMERS customers x 30 days (2,000,000 generated lines: about 580,000 day
# rows), ingested into a fresh SQLite database, then
#   - `curl -s 'http://.../export?from=FROM&format=csv' > /dev/null` against the running server;
#   - `sqlite3 -csv -header DB 'SELECT <the same columns> ... ORDER BY customer_id, date'`;
# each run $RUNS times (the median is shown) after one warm-up run of each, plus the server's
# resident memory (VmRSS, and its peak VmHWM, from /proc/PID/status) before the exports and after.
#
#   bash bench/export.sh                              # builds the release binary first
#   BIN=target/release/logstats bash bench/export.sh  # a binary already built
#
# Targets: the export at most 2x the time of sqlite3's dump; the server's peak RSS grows by at
# most 32 MB over the exports. Needs sqlite3 (`apt-get install -y sqlite3`) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."

LINES=${LINES:-2000000}
CUSTOMERS=${CUSTOMERS:-20000}
RUNS=${RUNS:-3}
PORT=${PORT:-18890}
WORK=target/bench-export
# The generator's default: 30 days ending 2024-10-02.
FROM=2024-09-03

command -v sqlite3 >/dev/null || { echo "sqlite3 is missing: apt-get install -y sqlite3" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin logstats
  BIN=${CARGO_TARGET_DIR:-target}/release/logstats
fi
mkdir -p "$WORK"
LOG="$WORK/export-$LINES-$CUSTOMERS.log"
[ -s "$LOG" ] || "$BIN" generate -o "$LOG" --lines "$LINES" --customers "$CUSTOMERS" --days 30 >/dev/null
DB="$WORK/export.db"
rm -f "$DB" "$DB-wal" "$DB-shm"
"$BIN" ingest --database "sqlite://$DB" "$LOG" >&2

"$BIN" serve --database "sqlite://$DB" --bind "127.0.0.1:$PORT" 2>"$WORK/serve.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

COLUMNS="customer_id, date, success_requests, failed_requests, uptime_percentage, duration_mean, \
duration_p50, duration_p99, total_requests, status_1xx, status_2xx, status_3xx, status_4xx, \
status_5xx, availability_percentage, duration_p90, duration_p95, duration_max"
SQL="SELECT $COLUMNS FROM resource_statistics_by_day WHERE date >= '$FROM' ORDER BY customer_id, date"
URL="http://127.0.0.1:$PORT/export?from=$FROM&format=csv"

memory() { awk '/^VmRSS|^VmHWM|^RssAnon|^RssFile/ {printf "%s %d MB  ", $1, $2 / 1024}' "/proc/$SERVER/status"; }
kb() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$SERVER/status"; }
# seconds CMD...: the wall time of one run, in seconds.
seconds() {
  local start end
  start=$(date +%s.%N)
  "$@" >/dev/null
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }'
}
median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
export_csv() { curl -fsS "$URL"; }
dump_csv() { sqlite3 -csv -header "$DB" "$SQL"; }

echo "server before the exports: $(memory)"
hwm_before=$(kb VmHWM)
# The warm-up runs, which also count the rows.
rows_export=$(export_csv | wc -l)
rows_dump=$(dump_csv | wc -l)
echo "rows (with the header): export $rows_export, sqlite3 $rows_dump"
export_runs=() dump_runs=()
for ((i = 0; i < RUNS; i++)); do
  export_runs+=("$(seconds export_csv)")
  dump_runs+=("$(seconds dump_csv)")
done
hwm_after=$(kb VmHWM)
echo "server after $((RUNS + 1)) exports: $(memory)"
e=$(median "${export_runs[@]}")
d=$(median "${dump_runs[@]}")
echo "export (curl ... > /dev/null): ${export_runs[*]} s, median $e s"
echo "sqlite3 -csv dump:             ${dump_runs[*]} s, median $d s"
awk -v e="$e" -v d="$d" -v b="$hwm_before" -v a="$hwm_after" 'BEGIN {
  printf "export / sqlite3 = %.2f (target <= 2); peak RSS growth %.1f MB (target <= 32)\n",
    e / d, (a - b) / 1024 }'
