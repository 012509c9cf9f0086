#!/usr/bin/env bash
# Contract test: schemathesis (pinned, from PyPI, in a venv under target/) against a running
# `logstats serve` on a fresh SQLite database with generated data. Fails on any 5xx or any answer
# that does not match the OpenAPI document. Bounded: 50 examples per operation, 10 minutes in all.
#
#   bash tests/contract.sh            (builds the debug binary unless LOGSTATS_BIN is set)
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV=target/contract-venv
WORK=target/contract
PORT=${PORT:-18899}
BIN=${LOGSTATS_BIN:-target/debug/logstats}

# A venv that was moved (its scripts name their old path) is made again.
if ! "$VENV/bin/schemathesis" --version >/dev/null 2>&1 ||
  [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))')" != "$SCHEMATHESIS_VERSION" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi
[ -n "${LOGSTATS_BIN:-}" ] || cargo build --bin logstats

rm -rf "$WORK" && mkdir -p "$WORK"
"$BIN" generate -o "$WORK/api.log" --lines 20000 --customers 5 >/dev/null
"$BIN" ingest --database "sqlite://$WORK/contract.db" "$WORK/api.log" 2>/dev/null
"$BIN" serve --database "sqlite://$WORK/contract.db" --bind "127.0.0.1:$PORT" 2>"$WORK/serve.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

# positive_data_acceptance is left out: the document cannot say that `to` must not be before
# `from`, so a schema-valid pair such as from=2024-09-05&to=2024-09-01 is rightly answered 422.
# From $WORK, so that schemathesis's own files (.schemathesis/) stay under target/.
cd "$WORK"
timeout 600 "../../$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/openapi.json" \
  --checks all --exclude-checks positive_data_acceptance \
  --max-examples 50 --seed 1 --workers 1 --request-timeout 10 \
  --generation-database none --no-color
