#!/usr/bin/env bash
# Many files: what planning and following cost with FILES files (default 20,000) in one directory.
#
#   BIN=target/release/logstats bench/files.sh [FILES]
#
# 1. FILES files of 10 lines: the first ingestion, then a rerun with nothing new (seconds, and the
#    rerun's ratio to the first: planning is linear when it stays flat as FILES grows).
# 2. `ingest --follow` of that directory (default --max-open-files): the descriptors it holds on
#    the directory's files once caught up (from /proc/PID/fd), and how long an appended line
#    takes to be committed (appended to a file not read since the start, then to a new file), with
#    the default --flush-interval of 1 s. BENCH_FOLLOW=0 skips this part.
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-20000}
work=${BENCH_DIR:-target/bench}/files-$files
bin=${BIN:-target/release/logstats}
[ -n "${BIN:-}" ] || cargo build --release --quiet
rm -rf "$work"
mkdir -p "$work/logs"
$bin generate --lines $((files * 10)) -o "$work/all.log" 2>/dev/null
(cd "$work/logs" && split -l 10 -a 6 ../all.log f && for f in f*; do mv "$f" "$f.log"; done)
db="sqlite://$work/stats.db"
lines() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT lines FROM ingest_totals').fetchone()[0])" "$work/stats.db"; }
seconds() { /usr/bin/time -f %e "$@" 2>&1 >/dev/null | tail -n 1; }

first=$(seconds $bin ingest --database "$db" "$work/logs")
rerun=$(seconds $bin ingest --database "$db" "$work/logs")
echo "files=$files first_ingest_s=$first noop_rerun_s=$rerun rerun_over_first=$(python3 -c "print(round($rerun / $first, 2))")"
[ "${BENCH_FOLLOW:-1}" = 1 ] || exit 0

LOGSTATS_LOG=logstats=debug $bin ingest --database "$db" --follow "$work/logs" 2>"$work/follow.err" &
follower=$!
trap 'kill $follower 2>/dev/null || true' EXIT
# Caught up: two commits after it began following.
until [ "$(grep -c committed "$work/follow.err" 2>/dev/null || true)" -ge 2 ] 2>/dev/null; do
  kill -0 $follower 2>/dev/null || { echo "files=$files the follower ended: $(grep -m1 -i error "$work/follow.err")"; exit 1; }
  sleep 0.2
done
open=$(ls -l /proc/$follower/fd 2>/dev/null | grep -c "$work/logs/" || true)
before=$(lines)
start=$(date +%s.%N)
tail -n 1 "$work/all.log" >> "$work/logs/faaaaaa.log"
until [ "$(lines)" -gt "$before" ]; do kill -0 $follower || exit 1; sleep 0.05; done
append_s=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
before=$(lines)
start=$(date +%s.%N)
tail -n 1 "$work/all.log" > "$work/logs/new.log"
until [ "$(lines)" -gt "$before" ]; do kill -0 $follower || exit 1; sleep 0.05; done
new_s=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
echo "files=$files follow_open_descriptors=$open append_committed_after_s=$append_s new_file_committed_after_s=$new_s"
