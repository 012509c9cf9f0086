# ---- build ------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src

# Only what the build needs: the binary embeds migrations/ and src/api/dashboard/
# at compile time.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations

# BuildKit cache mounts (the default builder of Docker Engine 23+ and Compose v2)
# keep downloaded crates and compiled dependencies between builds. target/ is a
# cache mount, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
 && install -D -m 0755 target/release/logstats /out/logstats

# ---- run --------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 logstats \
 && useradd --system --uid 10001 --gid logstats --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin logstats \
 && mkdir /app \
 && chown logstats:logstats /app

COPY --from=build /out/logstats /usr/local/bin/logstats

# Writable by the user: the default database is sqlite://logstats.db in the working directory.
WORKDIR /app
USER 10001:10001

EXPOSE 8888
ENTRYPOINT ["logstats"]
CMD ["serve", "--bind", "0.0.0.0:8888"]
