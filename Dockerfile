# Two stages: build with the full toolchain, run on a slim base.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p llmgw && cp target/release/llmgw /usr/local/bin/llmgw

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/llmgw /usr/local/bin/llmgw
# The router's usage spool (and `llmgw all`'s SQLite) live here; a named
# volume mounted on it inherits this ownership.
RUN mkdir -p /var/lib/llmgw/spool && chown -R 65534:65534 /var/lib/llmgw
USER 65534:65534
EXPOSE 8080 8081
ENTRYPOINT []
CMD ["llmgw", "all"]
