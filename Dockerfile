# syntax=docker/dockerfile:1
# The llmgw image: one binary, every service (`llmgw edge|router|quota|billing`)
# or all of them in one process (the default command).
#
#   docker build -t llmgw .
#   docker run --rm -p 127.0.0.1:8080:8080 llmgw        # demo model, development key
#
# Three stages. `planner` reduces the source tree to what decides the
# dependency graph (manifests, the lock file, every target as an empty stub);
# `build` compiles the dependencies from that alone, in a layer that stays
# cached until a manifest or Cargo.lock changes, then the real sources; the
# runtime stage holds the binary and CA certificates, nothing else.

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS planner
WORKDIR /src
COPY . .
# Stubs: `fn main() {}` for binaries, build scripts, tests and benches, an
# empty file for libraries; the stub files' names and the manifests are all
# the next stage sees, so an edit to a source file does not rebuild the
# dependencies.
RUN set -eu; \
    mkdir -p /recipe; \
    find . -path ./target -prune -o \( -name Cargo.toml -o -name Cargo.lock \) -type f -print \
      | while read -r file; do \
          mkdir -p "/recipe/$(dirname "$file")"; cp "$file" "/recipe/$file"; \
        done; \
    find crates \( -path '*/src/lib.rs' -o -path '*/src/main.rs' -o -path '*/src/bin/*.rs' \
        -o -path '*/benches/*.rs' -o -path '*/tests/*.rs' -o -path '*/examples/*.rs' \
        -o -name build.rs \) -type f -print \
      | while read -r file; do \
          mkdir -p "/recipe/$(dirname "$file")"; \
          case "$file" in \
            */src/lib.rs) : > "/recipe/$file" ;; \
            *) echo 'fn main() {}' > "/recipe/$file" ;; \
          esac; \
        done

FROM ${RUST_IMAGE} AS build
# `make`: the slim Rust image has a C compiler but not make, which the
# jemalloc build (the binary's allocator) runs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY --from=planner /recipe/ ./
# The dependency layer: cached until a manifest or Cargo.lock changes.
RUN cargo build --profile production --locked -p llmgw --bin llmgw
COPY . .
# The stubs' build outputs are newer than the copied sources' timestamps:
# touch the workspace's sources so cargo rebuilds every workspace crate.
RUN find crates -name '*.rs' -exec touch {} + \
    && cargo build --profile production --locked -p llmgw --bin llmgw \
    && install -m 0755 target/production/llmgw /usr/local/bin/llmgw

FROM ${RUNTIME_IMAGE}
# CA certificates: upstream providers are reached over TLS. No shell tools are
# needed: the health check is `llmgw probe`.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/llmgw /usr/local/bin/llmgw
# The data directory: `llmgw all` keeps its SQLite database and its spools
# under ./data, i.e. /var/lib/llmgw/data. A router on its own keeps its usage
# and audit spools under /var/lib/llmgw/router (usage/, audit/), an edge on
# its own its audit spool under /var/lib/llmgw/edge (audit/):
# docker-compose.yml and the Kubernetes manifests mount their volumes there.
# All belong to the runtime user (nobody): a named volume mounted on them
# inherits that ownership, and the services create the spool directories.
RUN mkdir -p /var/lib/llmgw/router /var/lib/llmgw/edge && chown -R 65534:65534 /var/lib/llmgw
WORKDIR /var/lib/llmgw
VOLUME ["/var/lib/llmgw"]
# In a container the edge must listen on every interface of the container to
# be reachable through a published port, also in demo mode (which otherwise
# keeps the development key on loopback). LLMGW_* variables beat the config
# file: to move the edge to another port in this image, set this variable.
ENV LLMGW_EDGE__LISTEN=0.0.0.0:8080
USER 65534:65534
# edge (HTTP), router, quota, billing (gRPC + /metrics), billing's admin API.
EXPOSE 8080 8081 8082 8083 8090
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["llmgw", "probe", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT []
CMD ["llmgw", "all"]
