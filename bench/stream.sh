#!/usr/bin/env bash
# Streams against files, in the same run, on one generated log ($LINES lines, 50 customers, SQLite):
#   - ingest the file (the baseline);
#   - generate the same lines into a JetStream stream, and ingest the stream;
#   - ship the file to another stream, and ingest that one;
# then checks that the three databases hold the same rows.
#
#   bash bench/stream.sh                          # 5,000,000 lines, NATS at 127.0.0.1:4222
#   BIN=target/release/logstats LINES=1000000 bash bench/stream.sh
#
# Needs a NATS server with JetStream at $NATS (streams BENCH_GEN_<pid> and BENCH_SHIP_<pid> are
# created and left there) and sqlite3.
set -euo pipefail
cd "$(dirname "$0")/.."

LINES=${LINES:-5000000}
NATS=${NATS:-nats://127.0.0.1:4222}
WORK=target/bench-stream
BIN=${BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release --quiet
  BIN=target/release/logstats
fi
rm -rf "$WORK" && mkdir -p "$WORK"
"$BIN" generate --lines "$LINES" -o "$WORK/g.log"
cat "$WORK/g.log" > /dev/null

timed() { # name, command...: prints "name seconds peak-RSS-KB"
  local name=$1; shift
  /usr/bin/time -f "$name %e s, peak RSS %M KB" "$@" 2>&1 >/dev/null | tail -n 1
}
timed "ingest file          " "$BIN" ingest --database "sqlite://$WORK/file.db" "$WORK/g.log"
timed "generate -> stream   " "$BIN" generate --lines "$LINES" -o "$NATS/BENCH_GEN_$$"
timed "ingest stream        " "$BIN" ingest --database "sqlite://$WORK/gen.db" "$NATS/BENCH_GEN_$$"
timed "ship file -> stream  " "$BIN" ship --host bench "$WORK/g.log" "$NATS/BENCH_SHIP_$$"
timed "ingest shipped stream" "$BIN" ingest --database "sqlite://$WORK/ship.db" "$NATS/BENCH_SHIP_$$"

for db in file gen ship; do
  sqlite3 "$WORK/$db.db" "SELECT * FROM resource_statistics_by_day ORDER BY 1, 2" | md5sum
done | uniq | wc -l | grep -qx 1 && echo "the three databases hold the same rows" \
  || { echo "the databases differ" >&2; exit 1; }
