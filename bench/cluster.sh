#!/usr/bin/env bash
# A cluster of two processes x 1 worker on loopback ingesting one file into one database: the
# wall seconds, process 1's share (percent) of the CPU time (user + system) of both, and each
# process's peak RSS in MB, on one line.
#
#   bench/cluster.sh URL LOG [BIN]      (BIN defaults to target/release/logstats)
#
# The database at URL is ingested into as it is: give a fresh one. bench/ingest.sh runs it at
# 100,000 x 30; the issue's own figure is 4,000,000 lines of that shape:
#   target/release/logstats generate --lines 4000000 --customers 100000 --days 30 -o target/bench/c4m.log
#   rm -f target/bench/cluster.db*; bench/cluster.sh sqlite://target/bench/cluster.db target/bench/c4m.log
set -euo pipefail
url=$1 log=$2 bin=${3:-target/release/logstats}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
printf '127.0.0.1:%s\n127.0.0.1:%s\n' "$port" $((port + 1)) >"$work/hosts"
for id in 0 1; do
  /usr/bin/time -f 'wall=%e cpu=%U %S rss=%M' -o "$work/time-$id" "$bin" ingest --database "$url" \
    --workers 1 --processes 2 --process-id $id --hostfile "$work/hosts" "$log" >/dev/null 2>&1 &
done
wait
cpu() { awk -F'cpu=' '/cpu=/ { split($2, t, " "); print t[1] + t[2] }' "$work/time-$1"; }
rss() { grep -o 'rss=[0-9]*' "$work/time-$1" | awk -F= '{ printf "%d", $2 / 1024 }'; }
echo "wall=$(grep -o 'wall=[0-9.]*' "$work/time-0" | cut -d= -f2)" \
  "process1=$(awk -v a="$(cpu 0)" -v b="$(cpu 1)" 'BEGIN { printf "%.1f", 100 * b / (a + b) }')%" \
  "rss0=$(rss 0)MB rss1=$(rss 1)MB"
