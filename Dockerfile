# One image with every service and telemetry-admin; docker-compose picks the
# binary per service.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ingest -p processor -p warehouse

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 telemetry \
    && mkdir -p /var/lib/ingest/spool && chown telemetry /var/lib/ingest/spool
COPY --from=build /src/target/release/ingest /src/target/release/processor \
    /src/target/release/telemetry-admin /usr/local/bin/
USER telemetry
ENV LOG_FORMAT=json
