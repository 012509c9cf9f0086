#!/usr/bin/env bash
# A commit into a table that already holds days: 2,000,000 new lines (seed 7) of 100,000
# customers x 30 days ingested into a copy of a database holding 10,000,000 lines of that shape
# (2,893,434 days), each change merged into its stored day. Prints the commit's milliseconds and
# the wall seconds of each run, alternating this binary and BASE_BIN (when given) RUNS times, on
# PostgreSQL (a database copied from a template each run) and SQLite (a copied file).
#
#   BIN=target/release/logstats BASE_BIN=path/to/previous/logstats bench/incremental.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-2}
work=${BENCH_DIR:-target/bench}
bin=${BIN:-target/release/logstats}
[ -n "${BIN:-}" ] || cargo build --release --quiet
pg=${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
mkdir -p "$work"
base="$work/card-100000x30.log" more="$work/more-100000x30.log"
[ -f "$base" ] || $bin generate --lines 10000000 --customers 100000 --days 30 -o "$base"
[ -f "$more" ] || $bin generate --lines 2000000 --customers 100000 --days 30 --seed 7 -o "$more"

admin() { psql "$pg/postgres" -qc "$1" >/dev/null 2>&1; }
# The stored days, written once by this binary.
admin 'DROP DATABASE IF EXISTS logstats_bench_stored'
admin 'CREATE DATABASE logstats_bench_stored'
$bin ingest --database "$pg/logstats_bench_stored" "$base" >/dev/null 2>&1
rm -f "$work/stored.db"*
$bin ingest --database "sqlite://$work/stored.db" "$base" >/dev/null 2>&1

commit() { # label binary url
  LOGSTATS_LOG=logstats=debug /usr/bin/time -f 'wall=%e' "$2" ingest --database "$3" "$more" 2>&1 \
    >/dev/null | grep -o 'committed groups=[0-9]*\|ms=[0-9]*\|wall=[0-9.]*' | tr '\n' ' ' |
    sed "s/^/$1 /"
  echo
}
binaries=(this)
[ -n "${BASE_BIN:-}" ] && binaries+=(previous)
for ((i = 0; i < runs; i++)); do
  for which in "${binaries[@]}"; do
    [ "$which" = this ] && b=$bin || b=$BASE_BIN
    admin 'DROP DATABASE IF EXISTS logstats_bench_changed'
    admin 'CREATE DATABASE logstats_bench_changed TEMPLATE logstats_bench_stored'
    commit "postgres $which" "$b" "$pg/logstats_bench_changed"
    rm -f "$work/changed.db"*
    cp "$work/stored.db" "$work/changed.db"
    [ ! -f "$work/stored.db-wal" ] || cp "$work/stored.db-wal" "$work/changed.db-wal"
    commit "sqlite   $which" "$b" "sqlite://$work/changed.db"
  done
done
admin 'DROP DATABASE IF EXISTS logstats_bench_changed'
admin 'DROP DATABASE IF EXISTS logstats_bench_stored'
rm -f "$work/changed.db"* "$work/stored.db"*
