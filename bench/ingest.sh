#!/usr/bin/env bash
# Ingestion throughput and memory, with `wc -l` and `cat` on the same file as the baseline, in one run.
#
#   bench/ingest.sh [LINES]          (default 10,000,000; PostgreSQL too when it answers)
#   BIN=target/release/logstats BENCH_RUNS=1 bench/ingest.sh      (a binary already built)
#
# Then a cardinality table (BENCH_CARDINALITY=0 skips it): LINES lines at 50 x 30, 10,000 x 30,
# 100,000 x 30 and 20,000 x 365 customers x days, random order, fresh database, default memory limit:
# seconds, lines/s, peak RSS, groups written, bytes spilled, database size, and DuckDB computing
# the same groups (counts, mean, quantile_disc p50/p99, uptime) from the same file into a table on
# disk, in the same run (DuckDB from PyPI, in a venv under target/); SQLite's own floor: `sqlite3`
# copying the rows logstats wrote into an empty table of the same schema (INSERT ... SELECT, the
# same pragmas); the same ingestion with `--no-resources` (no breakdown by resource) and the
# ratio of the two; BASE_BIN=path/to/previous/logstats adds that binary's seconds. At 100,000 x 30, a
# cluster of 2 processes x 1 worker on loopback as well: seconds, and process 1's share of the CPU
# time of both (user + system, from /usr/bin/time of each). BENCH_SHAPES="50x30 100000x30" measures
# only those shapes.
#
# Prints lines/s (process start to exit, committed), peak RSS, and the ratio of ingest time to
# `wc -l` time, for a 1,000,000-line file and the big one (flat memory: peak RSS at LINES should
# stay close to the 1M figure). BENCH_RUNS (default 3) runs each; the median is shown.
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-10000000}
work=${BENCH_DIR:-target/bench}
mkdir -p "$work"
# BIN=path/to/logstats measures that binary instead of building the release profile.
bin=${BIN:-target/release/logstats}
[ -n "${BIN:-}" ] || cargo build --release --quiet
pg_admin=${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}

for n in 1000000 "$lines"; do
  [ -f "$work/gen-$n.log" ] || $bin generate --lines "$n" -o "$work/gen-$n.log"
done
cat "$work/gen-$lines.log" > /dev/null   # warm the page cache

seconds() { /usr/bin/time -f %e "$@" 2>&1 >/dev/null | tail -n 1; }
wc_s=$(seconds wc -l "$work/gen-$lines.log")
cat_s=$(seconds cat "$work/gen-$lines.log")
echo "baseline on $(du -h "$work/gen-$lines.log" | cut -f1) ($lines lines): wc -l ${wc_s}s, cat ${cat_s}s"

runs=${BENCH_RUNS:-3}
run() { # backend url file lines reset-command: the median of $runs runs, by process time
  local i out rss wall results=()
  for ((i = 0; i < runs; i++)); do
    $5
    out=$( { /usr/bin/time -f 'peak_rss_kb=%M wall=%e' $bin ingest --database "$2" "$3" >/dev/null; } 2>&1 )
    rss=$(grep -o 'peak_rss_kb=[0-9]*' <<<"$out" | cut -d= -f2)
    wall=$(grep -o 'wall=[0-9.]*' <<<"$out" | cut -d= -f2)
    results+=("$wall $rss")
  done
  read -r wall rss < <(printf '%s\n' "${results[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p")
  printf '%-9s %-16s %s lines/s (process start to exit: %ss), peak RSS %d MB, %.1fx the time of wc -l\n' \
    "$1" "$(basename "$3")" "$(awk -v n="$4" -v w="$wall" 'BEGIN { printf "%.0f", n / w }')" "$wall" $((rss / 1024)) \
    "$(awk -v a="$wall" -v b="$wc_s" 'BEGIN { print (b > 0 ? a / b : 0) }')"
}

reset_sqlite() { rm -f "$work/bench.db"*; }
reset_postgres() {
  psql "$pg_admin/postgres" -qc 'DROP DATABASE IF EXISTS logstats_bench_ingest' \
    -c 'CREATE DATABASE logstats_bench_ingest' >/dev/null 2>&1
}

echo "each figure: the median of $runs runs, a fresh database each run"
for n in 1000000 "$lines"; do
  run sqlite "sqlite://$work/bench.db" "$work/gen-$n.log" "$n" reset_sqlite
done
if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  for n in 1000000 "$lines"; do
    run postgres "$pg_admin/logstats_bench_ingest" "$work/gen-$n.log" "$n" reset_postgres
  done
fi

[ "${BENCH_CARDINALITY:-1}" = 1 ] || exit 0
venv=target/bench-venv
[ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import duckdb' 2>/dev/null ||
  { python3 -m venv "$venv" && "$venv/bin/pip" install -q duckdb==2.0.1; }

# peak RSS in MB, wall seconds, and the --json report of one ingestion
measure() { # url file
  local out
  out=$( { /usr/bin/time -f 'peak_rss_kb=%M wall=%e' $bin ingest --json --database "$1" "$2" >"$work/report.json"; } 2>&1 )
  echo "$(($(grep -o 'peak_rss_kb=[0-9]*' <<<"$out" | cut -d= -f2) / 1024)) $(grep -o 'wall=[0-9.]*' <<<"$out" | cut -d= -f2)"
}
# Seconds `sqlite3` takes to copy the days of database $1 into an empty table of the same schema.
sqlite_floor() {
  local copy="$work/floor.db"
  rm -f "$copy"*
  sqlite3 "$copy" "PRAGMA journal_mode=WAL;" "$(sqlite3 "$1" '.schema resource_statistics_by_day')" >/dev/null
  seconds sqlite3 "$copy" "PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536; ATTACH '$1' AS src;
    INSERT INTO resource_statistics_by_day SELECT * FROM src.resource_statistics_by_day ORDER BY customer_id, date;"
  rm -f "$copy"*
}

# A cluster of two processes x 1 worker ingesting $2 into $1: wall seconds, and process 1's share
# (percent) of the CPU time of both.
cluster_of_two() {
  bash bench/cluster.sh "$1" "$2" "$bin" | sed -E 's/wall=([0-9.]+) process1=([0-9.]+)%.*/\1 \2/'
}

# A fresh database of backend $1; its URL in $url.
fresh() {
  if [ "$1" = sqlite ]; then
    reset_sqlite; url="sqlite://$work/bench.db"
  else
    reset_postgres; url="$pg_admin/logstats_bench_ingest"
  fi
}

field() { "$venv/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/report.json" "$1"; }

echo
echo "cardinality: $lines lines, random order, fresh database, default --memory-limit (256MB)"
printf '| customers x days | backend | seconds | lines/s | peak RSS MB | groups written | spilled MB | database MB | DuckDB s | DuckDB RSS MB | time / DuckDB | SQLite INSERT ... SELECT s | --no-resources s | with / without breakdown | previous binary s |\n'
printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n'
for shape in ${BENCH_SHAPES:-50x30 10000x30 100000x30 20000x365}; do
  customers=${shape%x*} days=${shape#*x}
  log="$work/card-$shape.log"
  [ -f "$log" ] || $bin generate --lines "$lines" --customers "$customers" --days "$days" -o "$log"
  cat "$log" >/dev/null
  rm -f "$work/duck.db"*
  duck=$( { /usr/bin/time -f 'peak_rss_kb=%M' "$venv/bin/python" bench/duckdb_groups.py "$log" "$work/duck.db"; } 2>&1 )
  duck_s=$(head -n 1 <<<"$duck" | cut -d' ' -f2)
  duck_mb=$(($(grep -o 'peak_rss_kb=[0-9]*' <<<"$duck" | cut -d= -f2) / 1024))
  backends=(sqlite)
  pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && backends+=(postgres)
  for backend in "${backends[@]}"; do
    fresh "$backend"
    read -r rss wall < <(measure "$url" "$log")
    floor=- previous=-
    if [ "$backend" = sqlite ]; then
      size=$(( $(cat "$work/bench.db"* | wc -c) / 1048576 ))
      command -v sqlite3 >/dev/null && floor=$(sqlite_floor "$work/bench.db")
    else
      size=$(psql "$pg_admin/postgres" -tAc "SELECT pg_database_size('logstats_bench_ingest') / 1048576")
    fi
    fresh "$backend"
    plain=$(seconds $bin ingest --no-resources --database "$url" "$log")
    if [ "$backend" = sqlite ] && [ -n "${BASE_BIN:-}" ]; then
      fresh "$backend"
      previous=$(seconds "$BASE_BIN" ingest --database "$url" "$log")
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$shape" "$backend" "$wall" \
      "$(awk -v n="$lines" -v w="$wall" 'BEGIN { printf "%.0f", n / w }')" "$rss" "$(field groups_changed)" \
      "$(( $(field spilled_bytes) / 1048576 ))" "$size" "$duck_s" "$duck_mb" \
      "$(awk -v a="$wall" -v b="$duck_s" 'BEGIN { printf "%.2f", a / b }')" "$floor" "$plain" \
      "$(awk -v a="$wall" -v b="$plain" 'BEGIN { printf "%.2f", a / b }')" "$previous"
  done
  [ "$shape" = 100000x30 ] || continue
  for backend in "${backends[@]}"; do
    fresh "$backend"
    read -r wall share < <(cluster_of_two "$url" "$log")
    printf '| %s, 2 processes x 1 worker | %s | %s | %s | | | | | %s | | %s | process 1: %s%% of the CPU | | | |\n' \
      "$shape" "$backend" "$wall" "$(awk -v n="$lines" -v w="$wall" 'BEGIN { printf "%.0f", n / w }')" \
      "$duck_s" "$(awk -v a="$wall" -v b="$duck_s" 'BEGIN { printf "%.2f", a / b }')" "$share"
  done
done
