#!/usr/bin/env python3
"""Benchmark of the Tasks API: the real `todo-api serve` on PostgreSQL, driven by wrk.

    python3 dev.py bench                      # every workload, 16 and 64 connections, 1 worker
    python3 dev.py bench --workers 2          # the same against two worker processes
    python3 dev.py bench --duration 5 --runs 3 --workloads list,get --connections 64
    python3 dev.py bench --auth eddsa         # EdDSA tokens verified against a local JWKS
    python3 dev.py bench --workloads list,create,mcp-list,mcp-add   # the MCP tools beside REST
    python3 dev.py bench --reference fastapi --workloads get  # a bare app's get (reference.py)
    python3 dev.py bench --workloads update,create-idem,toggle-idem --streams  # sync costs

Setup, all by this script: wrk from Debian's packages if it is missing, a throwaway database on
the PostgreSQL server (`--server`, default postgresql://postgres@127.0.0.1:5432/postgres),
migrations, 100 users x 50 tasks plus one user with 10,000 tasks, and one pre-minted token per
user. The service runs as production would (ENVIRONMENT=production, INFO logging as JSON lines
to a file, no reload), except without rate limits (RATE_LIMIT=0; `--env RATE_LIMIT=...` to
measure with one), pinned to one core with taskset; wrk runs pinned to the other core.

Each (workload, connections) pair gets a warm-up and then `--runs` measured runs; the table shows
medians. A run with any non-2xx answer or socket error is invalid and makes the exit status 1.
Results go to bench/results/<time>-<label>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

# The harness package sits next to this script; loaded as a module (tests), it is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import streams, sync_workloads
from harness.config import (
    BIG_USER_FACTORS,
    BIG_USER_TASKS,
    MCP_WORKLOADS,
    RESULTS,
    TASKS_PER_USER,
    WORKLOADS,
)
from harness.database import create_database, database_url, drop_database
from harness.load import Bench, ensure_wrk, run_wrk, write_lua_data
from harness.options import (
    add_placement_arguments,
    add_result_arguments,
    add_server_argument,
    workload_list,
)
from harness.placement import database_on
from harness.prepare import (
    migrate,
    pool_size,
    reset_after_run,
    seed_database,
    server_environment,
    write_workload_data,
)
from harness.report import (
    Row,
    Run,
    error_count,
    format_table,
    parse_wrk_output,
    top_functions,
)
from harness.server import THIS_TODO_API, running_server, server_command
from harness.tokens import Auth, auth_mode
from harness.venv import reexec_in_venv

# What the tests use of the harness, through this script.
__all__ = [
    "MCP_WORKLOADS",
    "WORKLOADS",
    "Row",
    "Run",
    "format_table",
    "parse_args",
    "parse_wrk_output",
    "write_lua_data",
]


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per pair")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per pair (median)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--connections", default="16,64")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--auth", choices=("hs256", "eddsa"), default="hs256")
    add_server_argument(parser)
    parser.add_argument("--port", type=int, default=18300)
    parser.add_argument("--jwks-port", type=int, default=18301)
    add_placement_arguments(parser)
    parser.add_argument("--no-big-user", action="store_true", help="skip the 10,000-task check")
    parser.add_argument(
        "--reference",
        choices=("fastapi", "starlette"),
        help="serve get from a bare reference app (bench/reference.py) instead of the service",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy each workload's first run")
    add_result_arguments(parser, None)
    sync_workloads.add_arguments(parser)
    streams.add_arguments(parser)
    args = parser.parse_args(argv)
    args.workloads = workload_list(parser, args.workloads)
    args.connections = [int(c) for c in args.connections.split(",") if c]
    if args.reference:
        if args.workloads != ["get"] or args.workers != 1:
            parser.error("--reference serves only the get workload, from one process")
        args.no_big_user = True
    args.label = args.label or (
        f"reference-{args.reference}" if args.reference else f"{args.auth}-w{args.workers}"
    )
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("error: the benchmark needs two cores, one for the server and one for wrk")
    ensure_wrk()
    if args.streams:
        streams.raise_open_files_limit(streams.open_files_needed(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    output = args.output or RESULTS / f"{stamp}-{args.label}.json"
    database = f"todo_bench_{uuid.uuid4().hex[:10]}"
    db_url = database_url(args.server, database)
    asyncio.run(create_database(args.server, database))
    try:
        with tempfile.TemporaryDirectory() as workdir, auth_mode(args.auth, args.jwks_port) as auth:
            return _bench(args, auth, database, db_url, Path(workdir), output)
    finally:
        asyncio.run(drop_database(args.server, database))


def _bench(
    args: argparse.Namespace, auth: Auth, database: str, db_url: str, workdir: Path, output: Path
) -> int:
    pool = pool_size(max(args.connections), args.workers)
    env = server_environment(args, db_url, auth, pool, streams.server_environment(args))
    migrate(THIS_TODO_API, env, workdir)
    seeded = seed_database(db_url)
    print(seeded.describe(), flush=True)
    data = write_workload_data(workdir, seeded, auth)

    served = f"reference app {args.reference}" if args.reference else "todo-api serve"
    print(
        f"Server: {served} --workers {args.workers}, pinned to CPU {args.server_cpus} "
        f"(taskset); wrk -t{args.wrk_threads} pinned to CPU {args.wrk_cpus}; "
        f"auth {args.auth}; LOG_LEVEL={args.log_level} LOG_JSON={args.log_json} "
        f"DB_POOL_SIZE={env['DB_POOL_SIZE']} DB_MAX_OVERFLOW={env['DB_MAX_OVERFLOW']} "
        f"RATE_LIMIT={env['RATE_LIMIT']}{' REDIS_URL set' if env.get('REDIS_URL') else ''}; "
        f"{args.runs} x {args.duration:g}s runs per row after {args.warmup:g}s warm-up",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    big_user: dict[str, Any] | None = None
    with database_on(args.server, args.database_cpus), running_server(args, env, workdir) as server:
        bench = Bench(args, server, database, db_url, data)
        for workload in args.workloads:
            for connections in args.connections:
                row = Row(workload, connections)
                bench.warm_up(workload, connections)
                stored_keys = []
                if workload in sync_workloads.KEYED_WORKLOADS:
                    reset_after_run(workload, db_url, seeded.last_id)
                for number in range(args.runs):
                    profile = None
                    if args.profile and number == 0 and connections == max(args.connections):
                        profile = str(RESULTS / f"profile-{args.label}-{workload}.txt")
                    row.runs.append(bench.measure(workload, connections, profile=profile))
                    if profile:
                        print(top_functions(Path(profile)), flush=True)
                    stored = reset_after_run(workload, db_url, seeded.last_id)
                    if stored is not None:
                        stored_keys.append(stored)
                row.rss_mb = bench.rss()
                rows.append(row.summary())
                if workload in sync_workloads.KEYED_WORKLOADS:
                    sync_workloads.with_first_request_check(rows[-1], stored_keys)
                print(format_table(rows[-1:]).splitlines()[-1], flush=True)
        if not args.no_big_user:
            big_user = _big_user_check(bench)
        stream_result = streams.measure_streams(bench, auth) if args.streams else None
        worker_rss = bench.rss()
    costs = None
    if args.baseline:
        costs = sync_workloads.cost_against_baseline(
            rows, sync_workloads.load_baseline(args.baseline)
        )
    result = {
        "when": output.stem,
        "label": args.label,
        "setup": {
            "server": " ".join(server_command(args)),
            "server_cpus": args.server_cpus,
            "wrk_cpus": args.wrk_cpus,
            "wrk_threads": args.wrk_threads,
            "database_cpus": args.database_cpus,
            "auth": args.auth,
            "log_level": args.log_level,
            "log_json": args.log_json,
            "rate_limit": env["RATE_LIMIT"],
            "duration_s": args.duration,
            "runs": args.runs,
            "warmup_s": args.warmup,
            "cpus": os.cpu_count(),
            "extra_env": args.env,
        },
        "rows": rows,
        "big_user": big_user,
        "peak_rss_mb_per_worker": worker_rss,
        "streams": stream_result,
        "cost_vs_baseline": costs,
    }
    output.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(format_table(rows))
    for workload, check in (big_user or {}).items():
        factor = BIG_USER_FACTORS[workload]
        verdict = "met" if check["ratio"] < factor else "NOT met"
        print(
            f"{workload}, first page, one connection: user with {BIG_USER_TASKS} tasks p50 "
            f"{check['big_p50_ms']:.2f} ms, user with {TASKS_PER_USER} tasks p50 "
            f"{check['small_p50_ms']:.2f} ms: ratio {check['ratio']:.2f} "
            f"({verdict}, target < {factor:g})"
        )
    if stream_result is not None:
        print(streams.format_streams(stream_result))
    if costs is not None:
        print(sync_workloads.format_costs(costs, str(args.baseline)))
    print(f"Peak RSS per worker: {', '.join(f'{mb:.1f} MB' for mb in worker_rss)}")
    print(f"Results: {output}")
    invalid = [row for row in rows if not row["valid"]]
    if stream_result is not None and not streams.streams_valid(stream_result):
        print("INVALID: a stream ended early or missed an event, or a run had errors")
        return 1
    if invalid or any(check["errors"] for check in (big_user or {}).values()):
        print("INVALID: some runs had errors (non-2xx or socket errors)")
        return 1
    return 0


def _big_user_check(bench: Bench) -> dict[str, Any]:
    """Per list workload: the 10,000-task user's first page against a 50-task user's, one
    request at a time."""
    checks = {}
    for workload in BIG_USER_FACTORS:
        results = {}
        for name in ("small", "big"):
            data = bench.data[f"{workload}@{name}"]
            run_wrk(bench.args, bench.server.url, data, 1, 1)
            results[name] = [
                run_wrk(bench.args, bench.server.url, data, 1, 3) for _ in range(bench.args.runs)
            ]
        small = statistics.median(run["latency_us"]["p50"] for run in results["small"]) / 1000
        big = statistics.median(run["latency_us"]["p50"] for run in results["big"]) / 1000
        checks[workload] = {
            "small_p50_ms": round(small, 2),
            "big_p50_ms": round(big, 2),
            "ratio": round(big / small, 2),
            "errors": sum(error_count(run) for runs in results.values() for run in runs),
            "runs": results,
        }
    return checks


if __name__ == "__main__":
    reexec_in_venv(__file__)
    sys.exit(main(sys.argv[1:]))
