#!/usr/bin/env bash
# Ingestion throughput and memory, with `wc -l` and `cat` on the same file as the baseline, in one run.
#
#   bench/ingest.sh [LINES]          (default 10,000,000; PostgreSQL too when it answers)
#
# Prints lines/s (process start to exit, committed), peak RSS, and the ratio of ingest time to
# `wc -l` time, for a 1,000,000-line file and the big one (flat memory: peak RSS at LINES should
# stay close to the 1M figure). BENCH_RUNS (default 3) runs each; the median is shown.
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-10000000}
work=${BENCH_DIR:-target/bench}
mkdir -p "$work"
cargo build --release --quiet
bin=target/release/logstats
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
