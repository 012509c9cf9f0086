#!/usr/bin/env bash
# What the breakdown by resource costs ingestion: the same file ingested into a fresh SQLite
# database by this binary, by this binary with --no-resources, and by a previous binary, the three
# alternated RUNS times (the machine's speed drifts: only runs next to each other compare).
#
#   BASE_BIN=path/to/previous/logstats bench/resources.sh [LINES] [RUNS]
#
# Shapes: 50 customers x 30 days and 100,000 x 30 (the generator's four paths a customer;
# BENCH_SHAPES="50x30 20000x365" for others), LINES lines each (default 10,000,000, random order;
# BENCH_ORDER=time sorts each file by its timestamps first, as most logs are written).
# Prints wall and CPU seconds and peak RSS of every run, then each shape's median wall time of
# each and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-10000000}
runs=${2:-3}
work=${BENCH_DIR:-target/bench}
bin=${BIN:-target/release/logstats}
[ -n "${BIN:-}" ] || cargo build --release --quiet
mkdir -p "$work"

median() { sort -n | sed -n "$(((runs + 1) / 2))p"; }
for shape in ${BENCH_SHAPES:-50x30 100000x30}; do
  log="$work/card-$shape.log"
  [ -f "$log" ] || $bin generate --lines "$lines" --customers "${shape%x*}" --days "${shape#*x}" -o "$log"
  if [ "${BENCH_ORDER:-random}" = time ]; then
    in_time_order="$work/card-$shape-time.log"
    [ -f "$in_time_order" ] || LC_ALL=C sort -s -k1,2 -S 1G "$log" >"$in_time_order"
    log=$in_time_order
  fi
  cat "$log" >/dev/null
  modes=(breakdown no-resources)
  [ -n "${BASE_BIN:-}" ] && modes+=(previous)
  for ((i = 0; i < runs; i++)); do
    for mode in "${modes[@]}"; do
      rm -f "$work/resources.db"*
      case $mode in
        breakdown) command=("$bin" ingest) ;;
        no-resources) command=("$bin" ingest --no-resources) ;;
        previous) command=("$BASE_BIN" ingest) ;;
      esac
      /usr/bin/time -f "$shape $mode %e %U %S %M" -a -o "$work/resources.times" \
        "${command[@]}" --database "sqlite://$work/resources.db" "$log" >/dev/null 2>&1
      tail -n 1 "$work/resources.times" |
        awk '{ printf "%-10s %-13s wall %5.2f s  cpu %5.2f s  peak RSS %4d MB\n", $1, $2, $3, $4 + $5, $6 / 1024 }'
    done
  done
  wall() { grep "^$shape $1 " "$work/resources.times" | tail -n "$runs" | cut -d' ' -f3 | median; }
  with=$(wall breakdown) without=$(wall no-resources)
  printf '%s median wall: breakdown %s s, --no-resources %s s (%.2fx)' "$shape" "$with" "$without" \
    "$(awk -v a="$with" -v b="$without" 'BEGIN { print a / b }')"
  if [ -n "${BASE_BIN:-}" ]; then
    previous=$(wall previous)
    printf ', previous binary %s s (%.2fx)' "$previous" "$(awk -v a="$with" -v b="$previous" 'BEGIN { print a / b }')"
  fi
  echo
done
rm -f "$work/resources.db"*
