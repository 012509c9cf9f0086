#!/usr/bin/env bash
# The entry point of the stand-in for the official PostgreSQL image (tests/compose.sh): on first
# start, a cluster in $PGDATA whose superuser is $POSTGRES_USER with $POSTGRES_PASSWORD, a database
# $POSTGRES_DB, and password logins from the network; then the server in the foreground.
set -euo pipefail
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}" "${PGDATA:=/var/lib/postgresql/data}"
[ "${1:-postgres}" = postgres ] || exec "$@"
shift || true

mkdir -p "$PGDATA" /var/run/postgresql
chown -R postgres:postgres "$PGDATA" /var/run/postgresql
chmod 0700 "$PGDATA"
# (A server started in the background is started by setpriv itself, which becomes the server: a
# shell function in the background would be a shell that ignores the SIGINT meant for it.)
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  password_file=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >"$password_file"
  chown postgres "$password_file"
  as_postgres initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$password_file" \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$password_file"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    # A server no client can reach yet (no TCP, a socket of its own) while the database is made.
    mkdir -p /tmp/pg-init && chown postgres /tmp/pg-init
    setpriv --reuid=postgres --regid=postgres --init-groups \
      postgres -D "$PGDATA" -c listen_addresses='' -c unix_socket_directories=/tmp/pg-init &
    server=$!
    until as_postgres pg_isready -q -h /tmp/pg-init -U "$POSTGRES_USER" -d postgres; do sleep 0.2; done
    as_postgres psql -q -h /tmp/pg-init -U "$POSTGRES_USER" -d postgres -c "CREATE DATABASE \"$POSTGRES_DB\""
    kill -INT "$server"
    wait "$server" || true
  fi
fi

# `docker stop` sends SIGTERM, which PostgreSQL takes as a smart shutdown (waiting for every client
# to leave); the official image stops it with SIGINT, a fast shutdown, and so does this one.
setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" -c listen_addresses='*' "$@" &
server=$!
trap 'kill -INT "$server"' TERM INT
wait "$server" || wait "$server"
