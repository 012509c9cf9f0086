#!/usr/bin/env bash
# API throughput, in the same run, with `wrk -t1 -c64 -d10s --latency`, on SQLite and (when it
# answers) PostgreSQL, over a database of $CUSTOMERS customers x 30 days:
#   - GET /healthz (the baseline);
#   - the repeated URL GET /customers/cust_1/stats?from=<30 days back> (served by the answer cache),
#     and the same with the cache off;
#   - the cache-proof mix: a random customer and a random start day for every request (what a
#     dashboard or a billing job asks), for stats and for the summary (bench/random-customer.lua);
#   - summaries of ten years (bench/long-summary.lua, 4 connections) over a database of
#     $DECADE_CUSTOMERS customers x ten years x $DECADE_PER_DAY requests a day (bench/decade.py;
#     default 4 x 300, durations to the microsecond).
#
#   bash bench/api.sh                 # 1,000,000 generated lines, 10,000 customers
#   LINES=200000 DURATION=5s bash bench/api.sh
#   BIN=target/release/logstats bash bench/api.sh    # a binary already built
#
# Targets: the mix >= 0.2 of /healthz on SQLite with p99 < 10 ms, >= 0.15 with p99 < 10 ms on
# PostgreSQL, no non-2xx answers; a ten-year summary within 250 ms. Needs wrk (`apt-get install -y wrk`); PostgreSQL at
# $BENCH_POSTGRES (database logstats_bench is dropped and created).
set -euo pipefail
cd "$(dirname "$0")/.."

LINES=${LINES:-1000000}
CUSTOMERS=${CUSTOMERS:-10000}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
PORT=${PORT:-18888}
PG_ADMIN=${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}
PG_URL=${PG_ADMIN%/*}/logstats_bench
WORK=target/bench-api
# The generator's default: 30 days ending 2024-10-02.
FROM=2024-09-03

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin logstats
  BIN=${CARGO_TARGET_DIR:-target}/release/logstats
fi
mkdir -p "$WORK"
LOG="$WORK/api-$LINES-$CUSTOMERS.log"
if [ ! -s "$LOG" ]; then
  "$BIN" generate -o "$LOG" --lines "$LINES" --customers "$CUSTOMERS"
fi

SERVERS=()
stop_servers() {
  for pid in "${SERVERS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  SERVERS=()
}
trap stop_servers EXIT

# run_wrk NAME URL [wrk args...]: prints "req/s p50 p90 p99 non2xx" (the full wrk output goes to
# $WORK)
run_wrk() {
  local name=$1 url=$2 out
  shift 2
  out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url")
  echo "$out" > "$WORK/wrk-$name.txt"
  local rps p50 p90 p99 bad
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p90=$(awk '$1 == "90%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  bad=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
  echo "$rps $p50 $p90 $p99 ${bad:-0}"
}

# start_server BACKEND URL PORT [ENV=VALUE...]
start_server() {
  local backend=$1 url=$2 port=$3
  shift 3
  env "$@" "$BIN" serve --database "$url" --bind "127.0.0.1:$port" 2>>"$WORK/serve-$backend.log" &
  SERVERS+=($!)
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "the server on port $port did not start" >&2
  exit 1
}

row() { printf '%-9s %-22s %10s %9s %9s %9s %8s\n' "$@"; }

# bench BACKEND URL: healthz, stats (cached, as served), stats with the cache off (the "before")
bench() {
  local backend=$1 url=$2
  echo "== $backend: ingesting $LINES lines" >&2
  "$BIN" ingest --database "$url" "$LOG" >&2
  # A bulk load leaves PostgreSQL work to do (hint bits, autovacuum's first pass), which would run
  # during the measurement: do it now, as a database serving for a while has.
  if [ "$backend" = postgres ]; then psql -q "$url" -c "VACUUM (ANALYZE)" >&2; fi
  start_server "$backend" "$url" "$PORT"
  start_server "$backend" "$url" "$((PORT + 1))" LOGSTATS_CACHE_TTL_MS=0
  local stats="/customers/cust_1/stats?from=$FROM"
  local rows
  rows=$(curl -fsS "http://127.0.0.1:$PORT$stats" | grep -o '"date"' | wc -l)
  echo "== $backend: $stats answers $rows rows; wrk -t1 -c$CONNECTIONS -d$DURATION --latency" >&2
  local health cached uncached mix summary
  local random=(-s bench/random-customer.lua)
  health=$(run_wrk "$backend-healthz" "http://127.0.0.1:$PORT/healthz")
  cached=$(run_wrk "$backend-stats" "http://127.0.0.1:$PORT$stats")
  uncached=$(run_wrk "$backend-stats-nocache" "http://127.0.0.1:$((PORT + 1))$stats")
  mix=$(CUSTOMERS=$CUSTOMERS ROUTE=stats run_wrk "$backend-mix" "http://127.0.0.1:$PORT" "${random[@]}")
  summary=$(CUSTOMERS=$CUSTOMERS ROUTE=summary run_wrk "$backend-mix-summary" "http://127.0.0.1:$PORT" "${random[@]}")
  stop_servers
  row backend route req/s p50 p90 p99 non-2xx
  # shellcheck disable=SC2086
  row "$backend" healthz $health
  # shellcheck disable=SC2086
  row "$backend" "stats, one URL" $cached
  # shellcheck disable=SC2086
  row "$backend" "one URL, cache off" $uncached
  # shellcheck disable=SC2086
  row "$backend" "stats, random mix" $mix
  # shellcheck disable=SC2086
  row "$backend" "summary, random mix" $summary
  awk -v h="${health%% *}" -v s="${cached%% *}" -v u="${uncached%% *}" -v m="${mix%% *}" \
    -v y="${summary%% *}" -v b="$backend" 'BEGIN {
    printf "%s, ratios to healthz: one URL %.2f, cache off %.2f, random stats %.3f, random summary %.3f\n\n",
      b, s / h, u / h, m / h, y / h }'
}

# bench_decade BACKEND URL: summaries of about ten years over $DECADE_CUSTOMERS customers of
# $DECADE_PER_DAY requests a day (durations to the microsecond): the median of five single
# uncached ones, three at once beside /healthz with --request-timeout 1, then a random mix
# (bench/long-summary.lua) under wrk.
bench_decade() {
  local backend=$1 url=$2 times i slowest health
  echo "== $backend: ingesting $(wc -l <"$DECADE_LOG") lines of ten years" >&2
  "$BIN" ingest --database "$url" "$DECADE_LOG" >&2
  start_server "$backend" "$url" "$PORT" LOGSTATS_REQUEST_TIMEOUT=1
  local base="http://127.0.0.1:$PORT/customers/dec_1/stats/summary"
  times=$(for i in 1 2 3 4 5; do
    curl -fsS -o /dev/null -w '%{time_total}\n' "$base?from=2015-01-0$i&to=2024-12-2$i"
  done | sort -n)
  echo "$backend: a ten-year summary, median of 5 uncached: $(sed -n 3p <<<"$times") s (all: $(tr '\n' ' ' <<<"$times"))"
  slowest=$(for i in 1 2 3; do
    curl -sS -o /dev/null -w '%{time_total} %{http_code}\n' "$base?from=2015-02-0$i&to=2024-11-1$i" &
  done; wait)
  health=$(curl -fsS -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT/healthz")
  echo "$backend: three at once: $(sort -n <<<"$slowest" | tail -n 1 | tr '\n' ' ')(slowest s, status); /healthz meanwhile ${health} s"
  local decade
  # Four connections: each summary takes a core for tens of milliseconds, so 64 at once would
  # measure how the request timeout sheds what two cores cannot do in a second.
  decade=$(CUSTOMERS=$DECADE_CUSTOMERS CONNECTIONS=4 run_wrk "$backend-decade" "http://127.0.0.1:$PORT" -s bench/long-summary.lua)
  stop_servers
  # shellcheck disable=SC2086
  row "$backend" "summary, 10 years" $decade
  echo
}

DECADE_CUSTOMERS=${DECADE_CUSTOMERS:-4}
DECADE_PER_DAY=${DECADE_PER_DAY:-300}
DECADE_LOG="$WORK/decade-$DECADE_CUSTOMERS-$DECADE_PER_DAY.log"
if [ ! -s "$DECADE_LOG" ]; then
  python3 bench/decade.py "$DECADE_CUSTOMERS" "$DECADE_PER_DAY" > "$DECADE_LOG"
fi

rm -f "$WORK/bench.db" "$WORK/bench.db-wal" "$WORK/bench.db-shm"
bench sqlite "sqlite://$WORK/bench.db"
rm -f "$WORK/decade.db" "$WORK/decade.db-wal" "$WORK/decade.db-shm"
bench_decade sqlite "sqlite://$WORK/decade.db"

if pg_isready -q -d "$PG_ADMIN" 2>/dev/null; then
  psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS logstats_bench WITH (FORCE)" \
    -c "CREATE DATABASE logstats_bench" >&2
  bench postgres "$PG_URL"
  psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS logstats_bench_decade WITH (FORCE)" \
    -c "CREATE DATABASE logstats_bench_decade" >&2
  bench_decade postgres "${PG_ADMIN%/*}/logstats_bench_decade"
else
  echo "PostgreSQL does not answer at $PG_ADMIN: skipped" >&2
fi
