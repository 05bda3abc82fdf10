#!/usr/bin/env bash
# Reproduces the llmgw benchmark: mock upstream alone ("direct"), the gateway
# as one process ("all-in-one") and as edge + router ("split"), each at
# several concurrencies, non-streaming and streaming. Prints a table and saves
# it (plus the raw JSON lines) under bench/results/. See bench/README.md.
#
# Environment knobs (all optional):
#   BENCH_REQUESTS_SCALE  multiply request counts (0.1 = quick run)      [1]
#   BENCH_CONCURRENCY     concurrencies to run                           ["1 16 64"]
#   BENCH_SCENARIOS       subset of "direct all-in-one split anthropic messages quota-memory quota"  [all]
#                         (also "policy": all-in-one with a policy on answers that never hits;
#                         "messages-openai": Anthropic Messages clients of an OpenAI-compatible model;
#                         "governed": `llmgw all` on Postgres + Redis, keys in the ledger;
#                         "split4": edge, router, quota and billing as four processes on Postgres + Redis;
#                         "cluster": governed with quota on a 3-master Redis Cluster started here;
#                         "overload": governed at BENCH_OVERLOAD_CONCURRENCY past edge.max_in_flight,
#                         from clients that retry a refusal at once, then ("overload-ra")
#                         from clients that wait out its Retry-After)
#   BENCH_OVERLOAD_CONCURRENCY  concurrencies of the overload scenario   ["64 256 1024"]
#   BENCH_MAX_IN_FLIGHT   edge.max_in_flight in the overload scenario    [64]
#   --compare             also run "direct" and print each scenario's CPU per request
#                         and added p50 as ratios to the mock measured in the same run
#   BENCH_CHUNKS          chunks the mock upstream emits per response    [20]
#   BENCH_THREADS         tokio threads of the load generator            [1]
#   BENCH_PORT_BASE       first port tried when looking for free ports   [18400]
#   BENCH_SKIP_BUILD=1    use the existing production binaries (target/production)
set -euo pipefail

COMPARE=0
for arg in "$@"; do
    case "$arg" in
        --compare) COMPARE=1 ;;
        *) echo "usage: bench/run.sh [--compare]" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SCALE="${BENCH_REQUESTS_SCALE:-1}"
CONCURRENCIES="${BENCH_CONCURRENCY:-1 16 64}"
SCENARIOS="${BENCH_SCENARIOS:-direct all-in-one split anthropic messages quota-memory quota}"
CHUNKS="${BENCH_CHUNKS:-20}"
THREADS="${BENCH_THREADS:-1}"
PORT_BASE="${BENCH_PORT_BASE:-18400}"
OVERLOAD_CONCURRENCIES="${BENCH_OVERLOAD_CONCURRENCY:-64 256 1024}"
MAX_IN_FLIGHT="${BENCH_MAX_IN_FLIGHT:-64}"
# Ratios need the mock's own figures from the same run.
if [[ "$COMPARE" == 1 && " $SCENARIOS " != *" direct "* ]]; then SCENARIOS="direct $SCENARIOS"; fi
KEY="sk-llmgw-bench-0123456789abcdef"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
LLMGW="$TARGET_DIR/production/llmgw"
BENCH="$TARGET_DIR/production/llmgw-bench"
STAMP="$(date +%Y-%m-%d_%H%M%S)"
RESULTS_DIR="$ROOT/bench/results"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/llmgw-bench.XXXXXX")"
PIDS=()       # every process we started, so the trap can stop them
KEEP_WORK=0   # keep logs around when something went wrong

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    KEEP_WORK=1
    exit 1
}

# SIGTERM first so the gateway can shut down cleanly; SIGKILL if it hangs,
# because a leftover process would hold the ports and skew the next run.
stop_proc() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

DATABASES=()  # Postgres databases the governed scenarios made
cleanup() {
    local pid db
    for pid in "${PIDS[@]}"; do stop_proc "$pid"; done
    for db in "${DATABASES[@]}"; do
        psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
    done
    if [[ "$KEEP_WORK" == 1 ]]; then
        log "logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'KEEP_WORK=1; exit 130' INT TERM

# Start a process in the background, logging to $WORK/<name>.log; sets $STARTED.
# Not run in a subshell, so $! is the binary itself: that is the pid whose
# /proc entries we measure.
start() {
    local name="$1"
    shift
    "$@" >"$WORK/$name.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
    log "started $name (pid $STARTED): $*"
}

stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do stop_proc "$pid"; done
    PIDS=()
}

# Keeps the mock running across scenarios while their gateway processes stop.
stop_pids() {
    local pid keep=() victim
    for victim in "$@"; do stop_proc "$victim"; done
    for pid in "${PIDS[@]}"; do
        [[ " $* " == *" $pid "* ]] || keep+=("$pid")
    done
    PIDS=("${keep[@]}")
}

fail_with_log() {
    local name="$1" why="$2"
    log "$name: $why; last lines of its log:"
    tail -n 30 "$WORK/$name.log" >&2 || true
    die "$name did not come up"
}

# Waits until something accepts TCP connections on the port (the mock and
# the router have no HTTP readiness endpoint we can rely on).
wait_tcp() {
    local name="$1" pid="$2" port="$3" i
    for i in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || fail_with_log "$name" "exited"
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    fail_with_log "$name" "port $port not open after 30 s"
}

wait_http_ok() {
    local name="$1" pid="$2" url="$3" i
    for i in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || fail_with_log "$name" "exited"
        if curl -fs --noproxy '*' -o /dev/null --max-time 1 "$url"; then return 0; fi
        sleep 0.1
    done
    fail_with_log "$name" "$url not 200 after 30 s"
}

# A port is free if we can bind it (no SO_REUSEADDR, so ports with lingering
# TIME_WAIT connections are skipped too).
port_free() {
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

# Sets PORTS to $1 free ports starting at PORT_BASE.
pick_ports() {
    local want="$1" port
    PORTS=()
    for ((port = PORT_BASE; port < PORT_BASE + 1000; port++)); do
        if port_free "$port"; then
            PORTS+=("$port")
            [[ ${#PORTS[@]} -ge $want ]] && return 0
        fi
    done
    die "no $want free ports in $PORT_BASE..$((PORT_BASE + 999))"
}

idle_rss() {
    local scenario="$1" name="$2" pid="$3" kb
    kb="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")"
    printf '%s\t%s\t%s\n' "$scenario" "$name" "$kb" >>"$WORK/idle.tsv"
}

scaled() { # scaled BASE MIN -> max(MIN, round(BASE * SCALE))
    awk -v b="$1" -v m="$2" -v s="$SCALE" 'BEGIN { n = int(b * s + 0.5); print (n < m ? m : n) }'
}

# run_matrix LABEL URL [KEY] -- PID...
snapshot() { # snapshot FILE: the edge's metrics, when METRICS_URL is set
    [[ -n "${METRICS_URL:-}" ]] || return 0
    curl -fsS "$METRICS_URL" >"$1" 2>/dev/null || rm -f "$1"
}

run_matrix() {
    local label="$1" url="$2" key="$3"
    shift 4
    local pid_args=() pid c n warm stream args out rc
    for pid in "$@"; do pid_args+=(--pid "$pid"); done
    for c in $CONCURRENCIES; do
        if [[ "$c" == 1 ]]; then n="$(scaled 2000 10)"; else n="$(scaled 20000 10)"; fi
        # At least two requests per worker so every pooled connection is open.
        warm="$(scaled 200 $((2 * c)))"
        for stream in no yes; do
            args=(--url "$url" --model bench --concurrency "$c" --requests "$n"
                --warmup "$warm" --chunks "$CHUNKS" --threads "$THREADS"
                --label "$label" --json "${pid_args[@]}")
            [[ -n "$key" ]] && args+=(--key "$key")
            [[ "$stream" == yes ]] && args+=(--stream)
            # BENCH_API=messages: the load speaks Anthropic's Messages API.
            args+=(--api "${BENCH_API:-chat}")
            # CLIENT_ARGS: more llmgw-bench flags for this matrix only.
            [[ -n "${CLIENT_ARGS:-}" ]] && args+=($CLIENT_ARGS)
            log "$label: c=$c stream=$stream requests=$n warmup=$warm"
            # METRICS_URL: the edge's metrics, kept around each run so that
            # its quota decision times can be told apart per concurrency.
            snapshot "$WORK/decisions.$label.$c.$stream.before"
            rc=0
            out="$("$BENCH" "${args[@]}")" || rc=$?
            snapshot "$WORK/decisions.$label.$c.$stream.after"
            # Exit code 2 = every request failed; the JSON line is still
            # worth keeping (it shows the error kinds), other codes are fatal.
            if [[ "$rc" != 0 && "$rc" != 2 ]]; then
                die "llmgw-bench failed (exit $rc) for $label c=$c stream=$stream"
            fi
            [[ "$rc" == 2 ]] && log "warning: all requests failed for $label c=$c stream=$stream"
            printf '%s\n' "$out" >>"$WORK/results.jsonl"
        done
    done
}

write_config() { # write_config FILE EDGE_PORT ROUTER_PORT WITH_ROUTER_URL [PROVIDER]
    local router_url="" provider="${5:-openai}"
    [[ "$4" == yes ]] && router_url="  router_url: \"http://127.0.0.1:$3\""
    cat >"$1" <<EOF
telemetry:
  log_level: warn
edge:
  listen: "127.0.0.1:$2"
$router_url
  api_keys:
    - key: "$KEY"
      tenant: "bench"
router:
  listen: "127.0.0.1:$3"
  models:
    - alias: "bench"
      provider: "$provider"
      base_url: "http://127.0.0.1:$PORT_MOCK/v1"
      upstream_model: "mock"
EOF
}

has_scenario() { [[ " $SCENARIOS " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------

command -v python3 >/dev/null || die "python3 is required (port checks and the report)"
command -v curl >/dev/null || die "curl is required (readiness checks)"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "building the production binaries (fat LTO)"
    cargo build --profile production -p llmgw -p llmgw-bench
fi
[[ -x "$LLMGW" && -x "$BENCH" ]] || die "missing $LLMGW or $BENCH (build them first)"

pick_ports 21
PORT_MOCK="${PORTS[0]}"
: >"$WORK/idle.tsv"
: >"$WORK/results.jsonl"

# The chunk count is also the mock's default: the Anthropic scenario cannot
# pass the `mock` body field (the router drops fields Anthropic rejects).
printf 'mock_upstream:\n  chunks: %s\n' "$CHUNKS" >"$WORK/mock.yaml"
start mock "$LLMGW" --config "$WORK/mock.yaml" mock-upstream --listen "127.0.0.1:$PORT_MOCK"
MOCK_PID="$STARTED"
wait_tcp mock "$MOCK_PID" "$PORT_MOCK"
sleep 1
idle_rss direct mock "$MOCK_PID"

if has_scenario direct; then
    # The mock's own CPU/RSS: a reference for what "no gateway" costs.
    run_matrix direct "http://127.0.0.1:$PORT_MOCK/v1" "" -- "$MOCK_PID"
fi

if has_scenario all-in-one; then
    EDGE="${PORTS[1]}" ROUTER="${PORTS[2]}"
    write_config "$WORK/all-in-one.yaml" "$EDGE" "$ROUTER" no
    start all-in-one "$LLMGW" --config "$WORK/all-in-one.yaml" all
    ALL_PID="$STARTED"
    wait_http_ok all-in-one "$ALL_PID" "http://127.0.0.1:$EDGE/readyz"
    sleep 1 # let start-up allocations settle before reading idle RSS
    idle_rss all-in-one llmgw "$ALL_PID"
    run_matrix all-in-one "http://127.0.0.1:$EDGE/v1" "$KEY" -- "$ALL_PID"
    stop_pids "$ALL_PID"
fi

if has_scenario split; then
    EDGE="${PORTS[3]}" ROUTER="${PORTS[4]}"
    write_config "$WORK/split.yaml" "$EDGE" "$ROUTER" yes
    start router "$LLMGW" --config "$WORK/split.yaml" router
    ROUTER_PID="$STARTED"
    wait_tcp router "$ROUTER_PID" "$ROUTER"
    start edge "$LLMGW" --config "$WORK/split.yaml" edge
    EDGE_PID="$STARTED"
    wait_http_ok edge "$EDGE_PID" "http://127.0.0.1:$EDGE/readyz"
    sleep 1
    idle_rss split router "$ROUTER_PID"
    idle_rss split edge "$EDGE_PID"
    run_matrix split "http://127.0.0.1:$EDGE/v1" "$KEY" -- "$ROUTER_PID" "$EDGE_PID"
    stop_pids "$ROUTER_PID" "$EDGE_PID"
fi

if has_scenario anthropic; then
    # all-in-one against the mock's Anthropic Messages API: the difference to
    # all-in-one is the cost of translating requests, answers and chunks.
    EDGE="${PORTS[5]}" ROUTER="${PORTS[6]}"
    write_config "$WORK/anthropic.yaml" "$EDGE" "$ROUTER" no anthropic
    start anthropic "$LLMGW" --config "$WORK/anthropic.yaml" all
    ANTHROPIC_PID="$STARTED"
    wait_http_ok anthropic "$ANTHROPIC_PID" "http://127.0.0.1:$EDGE/readyz"
    sleep 1
    idle_rss anthropic llmgw "$ANTHROPIC_PID"
    run_matrix anthropic "http://127.0.0.1:$EDGE/v1" "$KEY" -- "$ANTHROPIC_PID"
    stop_pids "$ANTHROPIC_PID"
fi

# messages_scenario LABEL PROVIDER: all-in-one, the load speaking Anthropic's
# Messages API. With the model on the mock's Anthropic API ("anthropic"),
# calls pass through natively (compare with all-in-one: the cost of reading
# Anthropic events for accounting); on its OpenAI API ("openai"), requests
# and answers are translated both ways (compare with messages).
messages_scenario() {
    local label="$1" provider="$2" pid
    local EDGE="${PORTS[5]}" ROUTER="${PORTS[6]}"
    write_config "$WORK/$label.yaml" "$EDGE" "$ROUTER" no "$provider"
    start "$label" "$LLMGW" --config "$WORK/$label.yaml" all
    pid="$STARTED"
    wait_http_ok "$label" "$pid" "http://127.0.0.1:$EDGE/readyz"
    sleep 1
    idle_rss "$label" llmgw "$pid"
    BENCH_API=messages run_matrix "$label" "http://127.0.0.1:$EDGE/v1" "$KEY" -- "$pid"
    stop_pids "$pid"
}

if has_scenario messages; then messages_scenario messages anthropic; fi
if has_scenario messages-openai; then messages_scenario messages-openai openai; fi

if has_scenario policy; then
    # all-in-one with a content policy on answers: 1,000 blocked terms (none
    # in the mock's words) and every data-leak detector. The difference to
    # all-in-one is what scanning every streamed chunk costs.
    EDGE="${PORTS[1]}" ROUTER="${PORTS[2]}"
    write_config "$WORK/policy.yaml" "$EDGE" "$ROUTER" no
    {
        printf 'policy:\n  default: bench\n  policies:\n    bench:\n      rules:\n'
        printf '        - {id: terms, kind: words, direction: output, action: block, word_lists: [terms]}\n'
        for kind in email phone resident_id bank_card ipv4 secret; do
            printf '        - {id: %s, kind: %s, direction: output, action: redact}\n' "$kind" "$kind"
        done
        printf '  word_lists:\n    terms:\n'
        for i in $(seq -w 1 1000); do printf '      - "forbidden-term-%s"\n' "$i"; done
    } >>"$WORK/policy.yaml"
    start policy "$LLMGW" --config "$WORK/policy.yaml" all
    POLICY_PID="$STARTED"
    wait_http_ok policy "$POLICY_PID" "http://127.0.0.1:$EDGE/readyz"
    sleep 1
    idle_rss policy llmgw "$POLICY_PID"
    run_matrix policy "http://127.0.0.1:$EDGE/v1" "$KEY" -- "$POLICY_PID"
    stop_pids "$POLICY_PID"
fi

# quota_scenario LABEL PORT_INDEX REDIS(yes|no): all-in-one with limits high
# enough that nothing is denied; the difference to all-in-one is what quotas
# cost. With Redis, redis-server's CPU counts; without, the counters are in
# the quota service's memory, which isolates the edge -> quota gRPC hop.
quota_scenario() {
    local label="$1" redis="$3"
    local EDGE="${PORTS[$2]}" ROUTER="${PORTS[$(($2 + 1))]}" QUOTA="${PORTS[$(($2 + 2))]}"
    local config="$WORK/$label.yaml" redis_line="" pid redis_pid=""
    [[ "$redis" == yes ]] && redis_line="  redis_url: \"${REDIS_URL:-redis://127.0.0.1:6379}\""
    write_config "$config" "$EDGE" "$ROUTER" no
    cat >>"$config" <<EOF
quota:
  listen: "127.0.0.1:$QUOTA"
$redis_line
  key_prefix: "llmgw-bench-$STAMP"
  limits:
    default_key: {requests_per_minute: 100000000, tokens_per_minute: 100000000000, concurrent: 100000}
    default_tenant: {monthly_budget_usd: "1000000"}
EOF
    if [[ "$redis" == yes ]]; then
        redis_pid="$(pgrep -x redis-server | head -n 1 || true)"
        [[ -n "$redis_pid" ]] || die "the $label scenario needs a local redis-server"
    fi
    start "$label" "$LLMGW" --config "$config" all
    pid="$STARTED"
    wait_http_ok "$label" "$pid" "http://127.0.0.1:$EDGE/readyz"
    sleep 1
    idle_rss "$label" llmgw "$pid"
    run_matrix "$label" "http://127.0.0.1:$EDGE/v1" "$KEY" -- "$pid" $redis_pid
    if [[ "$redis" == yes ]]; then
        curl -fsS "http://127.0.0.1:$QUOTA/metrics" >"$WORK/quota-metrics.txt" || true
    fi
    stop_pids "$pid"
}

if has_scenario quota-memory; then quota_scenario quota-memory 10 no; fi
if has_scenario quota; then quota_scenario quota 7 yes; fi

# ---------------------------------------------------------------------------
# Governed: what a production deployment does per request. Keys live in the
# ledger (Postgres, a database of the run's own), limits are exact in Redis,
# every request is priced and billed. CPU counts the gateway's processes and
# redis-server(s); Postgres is left out (it is shared with the machine).

ADMIN_TOKEN="bench-admin-token-0123456789abcdef"

# bench_database NAME: a fresh Postgres database; sets DB_URL.
bench_database() {
    local db="llmgw_bench_${STAMP//[^0-9]/}_${1//-/_}"
    command -v psql >/dev/null || die "the $1 scenario needs psql and a local Postgres"
    psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $db" >/dev/null || die "cannot create database $db"
    DATABASES+=("$db")
    DB_URL="postgres://postgres@127.0.0.1:5432/$db"
}

# write_governed_config FILE LABEL REDIS_URL SPLIT(yes|no) MAX_IN_FLIGHT
# Ports: PORTS[13..17] = edge, router, quota, billing, admin API.
write_governed_config() {
    local file="$1" label="$2" redis_url="$3" split="$4" in_flight="$5"
    local edge="${PORTS[13]}" router="${PORTS[14]}" quota="${PORTS[15]}" billing="${PORTS[16]}" admin="${PORTS[17]}"
    local remote_edge="" remote_billing=""
    if [[ "$split" == yes ]]; then
        remote_edge="  router_url: \"http://127.0.0.1:$router\"
  quota_url: \"http://127.0.0.1:$quota\"
  billing_url: \"http://127.0.0.1:$billing\""
        remote_billing="  billing_url: \"http://127.0.0.1:$billing\""
    fi
    cat >"$file" <<EOF
telemetry:
  log_level: warn
edge:
  listen: "127.0.0.1:$edge"
  max_in_flight: $in_flight
$remote_edge
billing:
  listen: "127.0.0.1:$billing"
  admin_listen: "127.0.0.1:$admin"
  database_url: "$DB_URL"
  data_dir: "$WORK/$label-data"
  admin_token_env: BENCH_ADMIN_TOKEN
quota:
  listen: "127.0.0.1:$quota"
  redis_url: "$redis_url"
  key_prefix: "llmgw-bench-$STAMP-$label"
$remote_billing
  limits:
    default_key: {requests_per_minute: 100000000, tokens_per_minute: 100000000000, concurrent: 100000}
    default_tenant: {monthly_budget_usd: "1000000"}
router:
  listen: "127.0.0.1:$router"
$remote_billing
  usage:
    spool_dir: "$WORK/$label-spool"
  models:
    - alias: "bench"
      provider: "openai"
      base_url: "http://127.0.0.1:$PORT_MOCK/v1"
      upstream_model: "mock"
      input_price_per_mtok: "1"
      output_price_per_mtok: "2"
EOF
}

# create_bench_key CONFIG: a tenant and a key in the ledger; sets GOVERNED_KEY.
create_bench_key() {
    local config="$1"
    export LLMGW_ADMIN_TOKEN="$ADMIN_TOKEN" LLMGW_ADMIN_URL="http://127.0.0.1:${PORTS[17]}"
    "$LLMGW" --config "$config" tenants create bench >"$WORK/tenant.out" 2>&1 \
        || { cat "$WORK/tenant.out" >&2; die "cannot create the bench tenant"; }
    GOVERNED_KEY="$("$LLMGW" --config "$config" keys create bench --name bench 2>&1 | sed -n 's/^Secret: //p')"
    unset LLMGW_ADMIN_TOKEN LLMGW_ADMIN_URL
    [[ -n "$GOVERNED_KEY" ]] || die "cannot create the bench key"
}

# governed_scenario LABEL REDIS_URL SPLIT(yes|no) MAX_IN_FLIGHT -- REDIS_PID...
governed_scenario() {
    local label="$1" redis_url="$2" split="$3" in_flight="$4"
    shift 5
    local redis_pids=("$@") config="$WORK/$label.yaml" pids=() names=() i service
    bench_database "$label"
    write_governed_config "$config" "$label" "$redis_url" "$split" "$in_flight"
    export BENCH_ADMIN_TOKEN="$ADMIN_TOKEN"
    if [[ "$split" == yes ]]; then
        "$LLMGW" --config "$config" migrate >"$WORK/$label-migrate.log" 2>&1 \
            || fail_with_log "$label-migrate" "migrations failed"
        for service in billing quota router edge; do
            start "$label-$service" "$LLMGW" --config "$config" "$service"
            pids+=("$STARTED") names+=("$service")
        done
        wait_tcp "$label-billing" "${pids[0]}" "${PORTS[16]}"
        wait_tcp "$label-quota" "${pids[1]}" "${PORTS[15]}"
        wait_tcp "$label-router" "${pids[2]}" "${PORTS[14]}"
    else
        start "$label" "$LLMGW" --config "$config" all
        pids+=("$STARTED") names+=(llmgw)
    fi
    wait_http_ok "$label" "${pids[-1]}" "http://127.0.0.1:${PORTS[13]}/readyz"
    create_bench_key "$config"
    sleep 1
    for i in "${!pids[@]}"; do idle_rss "$label" "${names[$i]}" "${pids[$i]}"; done
    METRICS_URL="http://127.0.0.1:${PORTS[13]}/metrics" \
        run_matrix "$label" "http://127.0.0.1:${PORTS[13]}/v1" "$GOVERNED_KEY" -- "${pids[@]}" "${redis_pids[@]}"
    if [[ "$label" == overload ]]; then
        # The same load from clients that wait out Retry-After, as the
        # OpenAI and Anthropic SDKs do (above: clients that retry at once).
        CLIENT_ARGS="--honour-retry-after" run_matrix "$label-ra" \
            "http://127.0.0.1:${PORTS[13]}/v1" "$GOVERNED_KEY" -- "${pids[@]}" "${redis_pids[@]}"
    fi
    # What the quota service decided without Redis, and the edge's refusals.
    curl -fsS "http://127.0.0.1:${PORTS[15]}/metrics" >"$WORK/$label.quota-metrics" || true
    curl -fsS "http://127.0.0.1:${PORTS[13]}/metrics" >"$WORK/$label.edge-metrics" || true
    stop_pids "${pids[@]}"
}

local_redis() {
    REDIS_PID="$(pgrep -x redis-server | head -n 1 || true)"
    [[ -n "$REDIS_PID" ]] || die "the governed scenarios need a local redis-server"
}

if has_scenario governed; then
    local_redis
    governed_scenario governed "${REDIS_URL:-redis://127.0.0.1:6379}" no 4096 -- "$REDIS_PID"
fi
if has_scenario split4; then
    local_redis
    governed_scenario split4 "${REDIS_URL:-redis://127.0.0.1:6379}" yes 4096 -- "$REDIS_PID"
fi
if has_scenario overload; then
    # Past the admission limit: admitted requests keep their latency, the
    # rest get 503 overloaded at once, and Redis decides every admitted one.
    local_redis
    CONCURRENCIES="$OVERLOAD_CONCURRENCIES" \
        governed_scenario overload "${REDIS_URL:-redis://127.0.0.1:6379}" no "$MAX_IN_FLIGHT" -- "$REDIS_PID"
fi
if has_scenario cluster; then
    # Three masters on ports of the run's own, no replicas (one request's
    # quota keys share a slot through the {tenant} hash tag).
    command -v redis-cli >/dev/null || die "the cluster scenario needs redis-cli"
    cluster_pids=() cluster_nodes=()
    for i in 18 19 20; do
        port="${PORTS[$i]}"
        mkdir -p "$WORK/cluster-$port"
        start "redis-$port" redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
            --cluster-config-file "$WORK/cluster-$port/nodes.conf" --dir "$WORK/cluster-$port" \
            --save "" --appendonly no
        cluster_pids+=("$STARTED")
        wait_tcp "redis-$port" "$STARTED" "$port"
        cluster_nodes+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${cluster_nodes[@]}" --cluster-yes >"$WORK/cluster-create.log" 2>&1 \
        || fail_with_log cluster-create "redis-cli --cluster create failed"
    for i in $(seq 100); do
        redis-cli -p "${PORTS[18]}" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
        sleep 0.1
    done
    governed_scenario cluster "redis+cluster://$(IFS=,; echo "${cluster_nodes[*]}")" no 4096 -- "${cluster_pids[@]}"
    stop_pids "${cluster_pids[@]}"
fi

stop_all

mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/$STAMP.txt"
cp "$WORK/results.jsonl" "$RESULTS_DIR/$STAMP.jsonl"
BENCH_META_SCALE="$SCALE" BENCH_META_CHUNKS="$CHUNKS" BENCH_META_THREADS="$THREADS" \
    python3 "$ROOT/bench/report.py" "$WORK/results.jsonl" "$WORK/idle.tsv" | tee "$OUT"
if [[ -s "$WORK/quota-metrics.txt" ]]; then
    python3 "$ROOT/bench/report.py" --redis-histogram "$WORK/quota-metrics.txt" | tee -a "$OUT"
fi
metrics_files=("$WORK"/*.quota-metrics)
if [[ -e "${metrics_files[0]}" ]]; then
    echo -e "\nGoverned scenarios: quota decisions and edge refusals" | tee -a "$OUT"
    for file in "${metrics_files[@]}"; do
        label="$(basename "$file" .quota-metrics)"
        python3 "$ROOT/bench/report.py" --decisions "$label" "$file" "$WORK/$label.edge-metrics" | tee -a "$OUT"
    done
fi
if compgen -G "$WORK/decisions.*.after" >/dev/null; then
    python3 "$ROOT/bench/report.py" --quota-decisions "$WORK" | tee -a "$OUT"
fi
if [[ "$COMPARE" == 1 ]]; then
    python3 "$ROOT/bench/report.py" --compare "$WORK/results.jsonl" | tee -a "$OUT"
fi
log "saved $OUT (raw runs: $RESULTS_DIR/$STAMP.jsonl)"
