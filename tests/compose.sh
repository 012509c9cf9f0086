#!/usr/bin/env bash
# Docker Compose, run for real: build the image from the Dockerfile, bring the stack of
# docker-compose.yml up, get the README's first URL answered from ./logs, check that running
# `ingest` again adds nothing and that `api` survives a PostgreSQL restart, then take everything
# down, leaving no container and no volume.
#
# Needs root on Debian: installs docker.io, docker-compose and debootstrap when missing and starts
# dockerd when it is not running (stopping it again at the end). Where the base images of the
# Dockerfile and docker-compose.yml cannot be pulled (no registry reachable), it makes stand-ins of
# the same names from Debian's packages, and says so: debian:bookworm-slim (debootstrap),
# rust:1.95-bookworm (that base with this machine's Rust toolchain, laid out as the official image
# lays it out) and postgres:17-alpine (Debian's PostgreSQL, honouring POSTGRES_USER,
# POSTGRES_PASSWORD and POSTGRES_DB). Images already present are used as they are.
#
# Environment: LOGSTATS_COMPOSE_PORT (default 8888, the README's port; another free port when
# 8888 is taken).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "compose.sh: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

# Debian's client: an older `docker` earlier on PATH may lack buildx, which BuildKit needs.
export PATH="/usr/bin:/usr/sbin:$PATH"
export DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1

# ---- Docker itself -------------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if ((${#missing[@]})); then
  say "installing ${missing[*]} from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

started_dockerd=""
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (log: target/compose/dockerd.log)"
  mkdir -p target/compose
  dockerd >target/compose/dockerd.log 2>&1 &
  started_dockerd=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || fail "dockerd did not start (see target/compose/dockerd.log)"
fi

project=logstats-compose-test
compose() { docker-compose --project-name "$project" "$@"; }

# On the way out, whatever happened: the stack down with its volume, no stand-in container left,
# and dockerd stopped when this script started it.
finish() {
  local status=$?
  if ((status != 0)); then
    say "the stack's logs:"
    compose logs --no-color --tail 40 >&2 2>/dev/null || true
  fi
  compose down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1 || true
  docker ps -a --format '{{.Names}}' | grep '^logstats-standin-' | xargs -r docker rm -f >/dev/null 2>&1 || true
  if [ -n "$started_dockerd" ]; then
    kill "$started_dockerd" 2>/dev/null || true
    wait "$started_dockerd" 2>/dev/null || true
  fi
  exit "$status"
}
trap finish EXIT

# ---- Base images: pulled, or stand-ins of the same names -----------------------------------------
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
pull_quietly() { timeout 60 docker pull -q "$1" >/dev/null 2>&1; }

# The Debian mirror apt uses here (stand-ins install from it, as the images' own apt does).
debian_mirror() {
  local url
  url=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list \
    /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
    grep -oE 'https?://[^ ]+' | head -n 1 || true)
  echo "${url:-http://deb.debian.org/debian}"
}

ensure_debian_base() {
  local image=debian:bookworm-slim
  have_image "$image" && return
  pull_quietly "$image" && return
  local mirror root
  mirror=$(debian_mirror)
  say "no registry answers: making a stand-in $image with debootstrap from $mirror (about 2 min)"
  root=$(mktemp -d /tmp/logstats-bookworm.XXXXXX)
  debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
  # The mirror apt reaches from inside containers, as the official image's sources do.
  echo "deb $mirror bookworm main" >"$root/etc/apt/sources.list"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" -c . | docker import -c 'CMD ["bash"]' - "$image" >/dev/null
  rm -rf "$root"
}

# A container of the Debian base, changed by a script, committed as an image of another name.
commit_from_debian() {
  local image=$1 changes=$2 script=$3
  shift 3
  local name="logstats-standin-$$"
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run --name "$name" "$@" debian:bookworm-slim bash -euo pipefail -c "$script" >/dev/null
  local change_args=()
  while IFS= read -r line; do [ -n "$line" ] && change_args+=(-c "$line"); done <<<"$changes"
  docker commit "${change_args[@]}" "$name" "$image" >/dev/null
  docker rm "$name" >/dev/null
}

# HTTPS from inside a container (the crate registry) trusts what this machine trusts.
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

ensure_rust_image() {
  local image=rust:1.95-bookworm
  have_image "$image" && return
  pull_quietly "$image" && return
  local toolchain
  toolchain=$(rustc --print sysroot)
  say "no registry answers: making a stand-in $image from debian:bookworm-slim, gcc and this machine's toolchain ($toolchain: $(rustc --version))"
  commit_from_debian "$image" \
    $'ENV RUSTUP_HOME=/usr/local/rustup\nENV CARGO_HOME=/usr/local/cargo\nENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nCMD ["bash"]' '
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        ca-certificates gcc libc6-dev make pkg-config >/dev/null
      rm -rf /var/lib/apt/lists/*
      cp /host/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
      mkdir -p /usr/local/rustup/toolchains/stable-x86_64-unknown-linux-gnu /usr/local/cargo/bin
      cd /host/toolchain && cp -a bin lib libexec etc /usr/local/rustup/toolchains/stable-x86_64-unknown-linux-gnu/
      printf "version = \"12\"\ndefault_toolchain = \"stable-x86_64-unknown-linux-gnu\"\nprofile = \"minimal\"\n" \
        >/usr/local/rustup/settings.toml
      for tool in cargo rustc rustdoc; do
        ln -s /usr/local/rustup/toolchains/stable-x86_64-unknown-linux-gnu/bin/$tool /usr/local/cargo/bin/$tool
      done
      /usr/local/cargo/bin/cargo --version' \
    -v "$toolchain:/host/toolchain:ro" -v "$CA_BUNDLE:/host/ca-certificates.crt:ro"
}

ensure_postgres_image() {
  local image=postgres:17-alpine
  have_image "$image" && return
  pull_quietly "$image" && return
  say "no registry answers: making a stand-in $image from debian:bookworm-slim and Debian's postgresql (PostgreSQL 15)"
  commit_from_debian "$image" \
    $'ENV PGDATA=/var/lib/postgresql/data\nENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]\nCMD ["postgres"]\nEXPOSE 5432' '
      mkdir -p /etc/postgresql-common
      echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
      rm -rf /var/lib/apt/lists/*
      # pg_isready, initdb and postgres on PATH, as in the official image.
      for tool in /usr/lib/postgresql/*/bin/*; do ln -sf "$tool" /usr/local/bin/; done
      install -m 0755 /host/entrypoint.sh /usr/local/bin/docker-entrypoint.sh' \
    -v "$PWD/tests/compose/postgres-entrypoint.sh:/host/entrypoint.sh:ro"
}

ensure_debian_base
ensure_rust_image
ensure_postgres_image

# ---- The stack ----------------------------------------------------------------------------------
port=${LOGSTATS_COMPOSE_PORT:-8888}
if [ -z "${LOGSTATS_COMPOSE_PORT:-}" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  say "port 8888 is taken here: publishing the API on $port instead"
fi
export LOGSTATS_PORT=$port
url="http://127.0.0.1:$port/customers/cust_1/stats?from=2024-09-03"


compose down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1 || true

say "building the image from the Dockerfile"
build_start=$(date +%s)
compose build
say "image built in $(($(date +%s) - build_start)) s"

say "bringing the stack up (db, migrate, ingest, api)"
compose up -d

# Waits for a one-off service to exit; fails unless it exits 0.
exited_ok() {
  local service=$1 container state
  container=$(compose ps -q "$service")
  [ -n "$container" ] || fail "no container for $service"
  for _ in $(seq 1 300); do
    state=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$container")
    case "$state" in
      "exited 0") return 0 ;;
      exited*) fail "$service exited with status ${state#exited }" ;;
    esac
    sleep 1
  done
  fail "$service did not finish within 300 s"
}
exited_ok migrate
exited_ok ingest

# The answer the API gives now, once it answers 200 (it may start before PostgreSQL is reachable).
answer() {
  local body
  for _ in $(seq 1 120); do
    if body=$(curl -fsS --max-time 5 "$url" 2>/dev/null); then
      echo "$body"
      return 0
    fi
    sleep 1
  done
  fail "$url did not answer 200 within 120 s"
}

# The README's first URL against the naive count of ./logs: every day of cust_1 from 2024-09-03,
# its requests by status class and its longest duration.
check_against_logs() {
  python3 - "$1" logs <<'PY'
import gzip, json, os, sys
from collections import defaultdict
answer, root = json.loads(sys.argv[1]), sys.argv[2]
days = defaultdict(lambda: {"total_requests": 0, "success_requests": 0, "status_5xx": 0, "max_us": 0})
for dirpath, _, names in os.walk(root):
    for name in names:
        path = os.path.join(dirpath, name)
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt") as lines:
            for line in lines:
                f = line.split()
                if len(f) != 6 or f[2] != "cust_1" or f[0] < "2024-09-03":
                    continue
                day, status = days[f[0]], int(f[4])
                day["total_requests"] += 1
                day["success_requests"] += 200 <= status <= 299
                day["status_5xx"] += status >= 500
                seconds, _, fraction = f[5].partition(".")
                day["max_us"] = max(day["max_us"], int(seconds) * 10**6 + int((fraction + "000000")[:6]))
expected = {d: v for d, v in sorted(days.items())}
got = {row["date"]: row for row in answer}
assert list(got) == list(expected), f"days: got {list(got)}, expected {list(expected)}"
for date, want in expected.items():
    row = got[date]
    for field in ("total_requests", "success_requests", "status_5xx"):
        assert row[field] == want[field], f"{date} {field}: got {row[field]}, expected {want[field]}"
    assert round(row["duration_max"] * 10**6) == want["max_us"], f"{date} duration_max: {row['duration_max']}"
print(f"{len(expected)} days of cust_1 equal the count of ./logs")
PY
}

first=$(answer)
check_against_logs "$first" || fail "the answer differs from ./logs"
say "$url answered from ./logs"

rerun=$(compose run --rm --no-deps ingest 2>&1) || fail "ingest again: $rerun"
echo "$rerun" | grep -q "ingested 0 lines" || fail "ingest again read lines again: $rerun"
[ "$(answer)" = "$first" ] || fail "the answer changed after running ingest again"
say "running ingest again added nothing"

compose restart db >/dev/null
[ "$(answer)" = "$first" ] || fail "the answer changed after PostgreSQL restarted"
api=$(compose ps -q api)
[ "$(docker inspect -f '{{.RestartCount}}' "$api")" = 0 ] || fail "api restarted with PostgreSQL"
say "api answers the same after a PostgreSQL restart"

compose down --volumes --remove-orphans --timeout 20 >/dev/null
left=$(docker ps -a -q --filter "label=com.docker.compose.project=$project")
[ -z "$left" ] || fail "containers left after down: $left"
say "passed: the stack is down, no container left"
