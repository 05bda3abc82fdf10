#!/usr/bin/env python3
"""Formats the JSON lines of `llmgw-bench --json` runs into the benchmark table.

Usage: report.py RESULTS.jsonl IDLE.tsv        (called by bench/run.sh)
       report.py --compare RESULTS.jsonl        ratios to the mock in the same run
       report.py --decisions LABEL QUOTA_METRICS EDGE_METRICS

Kept separate from run.sh because computing "added latency vs direct" needs
joining rows, which is painful in bash.
"""

import json
import os
import platform
import subprocess
import sys
from datetime import datetime


def sh(*cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_rev():
    rev = sh("git", "rev-parse", "--short", "HEAD")
    if rev is None:
        return "no commit"
    dirty = sh("git", "status", "--porcelain")
    return rev + (" (dirty)" if dirty else "")


def fmt(value, decimals=3):
    return "-" if value is None else f"{value:.{decimals}f}"


def load_runs(path):
    runs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                runs.append(json.loads(line))
    return runs


def load_idle(path):
    idle = []  # (scenario, process, MB), in start order
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3 and parts[2]:
                idle.append((parts[0], parts[1], int(parts[2]) / 1024))
    return idle


COLUMNS = [
    # header, width, how to render a run
    ("scenario", -11, lambda r: r["label"]),
    ("conc", 4, lambda r: str(r["concurrency"])),
    ("stream", 6, lambda r: "yes" if r["stream"] else "no"),
    ("ok", 7, lambda r: str(r["ok"])),
    ("err", 5, lambda r: str(r["errors"])),
    ("rps", 8, lambda r: fmt(r["rps"], 0)),
    ("p50_ms", 8, lambda r: fmt(r["p50_ms"])),
    ("p90_ms", 8, lambda r: fmt(r["p90_ms"])),
    ("p99_ms", 8, lambda r: fmt(r["p99_ms"])),
    ("max_ms", 8, lambda r: fmt(r["max_ms"])),
    ("ttfb50", 7, lambda r: fmt(r["ttfb_p50_ms"])),
    ("+p50_ms", 8, lambda r: fmt(r.get("added_p50_ms"))),
    ("cpu_us/rq", 9, lambda r: fmt(r["cpu_us_per_req"], 1)),
    ("cores", 5, lambda r: fmt(r["cpu_cores"], 2)),
    ("rss_mb", 7, lambda r: fmt(r["rss_mb"], 1)),
    ("peak_mb", 7, lambda r: fmt(r["peak_rss_mb"], 1)),
]


def line(cells):
    out = []
    for (_, width, _), cell in zip(COLUMNS, cells):
        out.append(cell.ljust(-width) if width < 0 else cell.rjust(width))
    return " ".join(out)


def add_added_latency(runs):
    """Gateway p50 minus direct p50 at the same concurrency and mode."""
    direct = {
        (r["concurrency"], r["stream"]): r["p50_ms"]
        for r in runs
        if r["label"] == "direct"
    }
    for r in runs:
        base = direct.get((r["concurrency"], r["stream"]))
        if r["label"] != "direct" and base is not None and r["p50_ms"] is not None:
            r["added_p50_ms"] = r["p50_ms"] - base


def redis_histogram(path):
    """p50/p99 of the quota service's Redis round trips, per operation, from
    its Prometheus histogram (bucket upper bounds: an upper estimate)."""
    buckets = {}
    with open(path) as f:
        for line in f:
            if not line.startswith("llmgw_quota_redis_seconds_bucket"):
                continue
            labels, value = line.rsplit(" ", 1)
            inside = labels[labels.index("{") + 1 : labels.index("}")]
            fields = dict(part.split("=", 1) for part in inside.split(","))
            op = fields.get("op", "").strip('"')
            le = fields.get("le", "").strip('"')
            bound = float("inf") if le == "+Inf" else float(le)
            buckets.setdefault(op, []).append((bound, float(value)))
    print("\nQuota service Redis round trips (one per Acquire, one per Settle):")
    for op, points in sorted(buckets.items()):
        points.sort()
        total = points[-1][1]
        if not total:
            continue

        def quantile(q):
            for bound, count in points:
                if count >= q * total:
                    return bound
            return float("inf")

        print(f"  {op:<8} n={int(total):>7}  p50 <= {quantile(0.5) * 1e3:.3f} ms  p99 <= {quantile(0.99) * 1e3:.3f} ms")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    runs = load_runs(sys.argv[1])
    idle = load_idle(sys.argv[2])
    add_added_latency(runs)

    env = os.environ
    print(f"llmgw benchmark  {datetime.now().isoformat(timespec='seconds')}  git {git_rev()}")
    print(
        f"host: {os.cpu_count()} cores, {cpu_model()}, {platform.system()} {platform.release()}; "
        f"{sh('rustc', '--version') or 'rustc ?'}"
    )
    print(
        f"requests scale {env.get('BENCH_META_SCALE', '?')}, mock chunks "
        f"{env.get('BENCH_META_CHUNKS', '?')}, load generator threads "
        f"{env.get('BENCH_META_THREADS', '?')} (it shares the machine with the gateway)"
    )
    print()

    print("Idle RSS before load (MB):")
    by_scenario = {}
    for scenario, proc, mb in idle:
        by_scenario.setdefault(scenario, []).append((proc, mb))
    for scenario, procs in by_scenario.items():
        parts = " + ".join(f"{proc} {mb:.1f}" for proc, mb in procs)
        total = sum(mb for _, mb in procs)
        suffix = f" = {total:.1f}" if len(procs) > 1 else ""
        print(f"  {scenario:<11} {parts}{suffix}")
    print()

    print(line([c[0] for c in COLUMNS]))
    previous = None
    for r in runs:
        if previous is not None and r["label"] != previous:
            print()
        previous = r["label"]
        print(line([render(r) for _, _, render in COLUMNS]))

    failed = [r for r in runs if r["errors"]]
    if failed:
        print()
        print("Errors:")
        for r in failed:
            kinds = ", ".join(f"{n} x {k}" for k, n in r["error_kinds"].items())
            stream = "stream" if r["stream"] else "plain"
            print(f"  {r['label']} c={r['concurrency']} {stream}: {kinds}")

    print()
    print(
        "direct = load generator -> mock upstream (cpu/rss columns are the mock's);\n"
        "all-in-one / split = through the gateway (cpu/rss = gateway processes only);\n"
        "anthropic = all-in-one with the model served over Anthropic's Messages API;\n"
        "messages = Anthropic Messages clients, passed through to that API;\n"
        "messages-openai = Messages clients of an OpenAI-compatible model (translated);\n"
        "quota-memory = all-in-one with limits kept in the quota service's memory\n"
        "  (what the edge -> quota gRPC hop costs);\n"
        "quota = all-in-one with limits in Redis (cpu includes redis-server);\n"
        "policy = all-in-one with a content policy on answers (1,000 terms and\n"
        "  every detector, never hitting: what scanning each chunk costs).\n"
        "governed = `llmgw all` on Postgres + Redis, keys in the ledger (cpu includes redis-server);\n"
        "split4 = governed as four processes (edge, router, quota, billing);\n"
        "overload = governed past edge.max_in_flight (503 overloaded beyond it), clients retrying at once;\n"
        "overload-ra = the same with clients that wait out Retry-After, as the OpenAI and Anthropic SDKs do;\n"
        "cluster = governed with quota on a 3-master Redis Cluster (cpu includes all three);\n"
        "+p50_ms = gateway p50 - direct p50 at the same concurrency and mode."
    )


def compare(path):
    """Each scenario's CPU per request and added p50 as ratios to the mock
    measured in the same run (absolute figures drift between runs and
    machines; ratios to the mock much less)."""
    runs = load_runs(path)
    add_added_latency(runs)
    direct = {(r["concurrency"], r["stream"]): r for r in runs if r["label"] == "direct"}
    print("\nCompared with the mock in the same run (cpu x mock = gateway CPU per OK request / the mock's):")
    print(f"{'scenario':<15} {'conc':>4} {'stream':>6} {'cpu_us/rq':>9} {'x mock':>7} {'+p50_ms':>8} {'p99_ms':>8} {'ok':>7} {'err':>6}")
    for r in runs:
        base = direct.get((r["concurrency"], r["stream"]))
        if r["label"] == "direct" or base is None or not base["cpu_us_per_req"]:
            continue
        ratio = r["cpu_us_per_req"] / base["cpu_us_per_req"] if r["cpu_us_per_req"] else None
        stream = "yes" if r["stream"] else "no"
        print(
            f"{r['label']:<15} {r['concurrency']:>4} {stream:>6} {fmt(r['cpu_us_per_req'], 1):>9} "
            f"{fmt(ratio, 1):>7} {fmt(r.get('added_p50_ms')):>8} {fmt(r['p99_ms']):>8} {r['ok']:>7} {r['errors']:>6}"
        )


def histogram(path, name):
    """Cumulative bucket counts of an unlabelled Prometheus histogram."""
    points = {}
    with open(path) as f:
        for line in f:
            if not line.startswith(name + "_bucket{"):
                continue
            labels, value = line.rsplit(" ", 1)
            le = labels[labels.index('le="') + 4 :].split('"', 1)[0]
            points[float("inf") if le == "+Inf" else float(le)] = float(value)
    return points


def quota_decisions(work):
    """The edge's quota decision times (its Acquire call to the quota
    service's answer: the hop, the script in Redis and back) per governed
    run, from its metrics before and after the run (bucket upper bounds)."""
    import glob
    import os

    name = "llmgw_edge_quota_decision_seconds"
    print("\nQuota decisions seen from the edge (Acquire to answer), per run:")
    print(f"{'scenario':<12} {'conc':>4} {'stream':>6} {'n':>7} {'p50 <=':>9} {'p99 <=':>9}")
    rows = []
    for after in glob.glob(os.path.join(work, "decisions.*.after")):
        _, label, conc, stream, _ = os.path.basename(after).split(".")
        before = after[: -len("after")] + "before"
        end = histogram(after, name)
        start = histogram(before, name) if os.path.exists(before) else {}
        points = sorted((bound, count - start.get(bound, 0.0)) for bound, count in end.items())
        if not points or not points[-1][1]:
            continue
        total = points[-1][1]

        def quantile(q):
            return next(bound for bound, count in points if count >= q * total)

        rows.append((label, int(conc), stream, int(total), quantile(0.5), quantile(0.99)))
    for label, conc, stream, total, p50, p99 in sorted(rows):
        print(f"{label:<12} {conc:>4} {stream:>6} {total:>7} {p50 * 1000:>7.2f}ms {p99 * 1000:>7.2f}ms")


def metric_sum(path, name, match=""):
    total = 0.0
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name) and match in line:
                    total += float(line.rsplit(" ", 1)[1])
    except OSError:
        return None
    return total


def decisions(label, quota_metrics, edge_metrics):
    """What a governed scenario's quota service decided without Redis, and
    what its edge refused at the admission limit."""
    without = metric_sum(quota_metrics, "llmgw_quota_decisions_total", 'degraded="true"')
    total = metric_sum(quota_metrics, "llmgw_quota_decisions_total")
    overloaded = metric_sum(edge_metrics, "llmgw_edge_overloaded_total")
    unavailable = metric_sum(edge_metrics, "llmgw_edge_requests_total", 'status="503"')
    print(
        f"  {label:<10} quota decisions {fmt(total, 0)}, without Redis {fmt(without, 0)}; "
        f"refused at the admission limit {fmt(overloaded, 0)}; other 503s from the edge {fmt(unavailable, 0)}"
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--redis-histogram":
        redis_histogram(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "--quota-decisions":
        quota_decisions(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "--compare":
        compare(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "--decisions":
        decisions(*sys.argv[2:])
    else:
        main()
