#!/usr/bin/env python3
"""Server CPU per request of this checkout ("after") against another ("before"), interleaved.

    .venv/bin/python bench/compare.py --against ../old             # list, get, create, toggle
    .venv/bin/python bench/compare.py --against ../old --rounds 10 --workloads get,create-idem

Two runs of bench/run.py minutes apart differ by tens of percent on a shared machine, so this
script measures both checkouts in the same minutes: both servers run at once (`todo-api serve`,
one worker each, each from its own checkout's .venv, on its own throwaway database migrated by
its own `todo-api migrate` and seeded by this checkout's harness), pinned to the same CPU, with
wrk on the other. After a warm-up burst of each side and workload, every round runs one burst
of each workload against each side, the side that goes first alternating (ABBA...).

The change is the median over rounds of after/before in the same round, minus one; min..max are
the lowest and highest of those ratios. The --against checkout needs `todo-api` in its .venv
(made with its dev.py when missing). Every burst goes to bench/results/<time>-<label>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

# The harness package sits next to this script; loaded as a module (tests), it is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.comparison import format_comparison, side_order, summarize
from harness.config import RESULTS, ROOT
from harness.database import create_database, drop_database, free_connections
from harness.load import Bench, ensure_wrk
from harness.options import (
    add_sides_arguments,
    checkout_directory,
    workload_list,
)
from harness.placement import database_on
from harness.prepare import pool_size, reset_after_run
from harness.server import THIS_TODO_API, running_server, server_command
from harness.sides import Side, side_args
from harness.tokens import auth_mode
from harness.venv import reexec_in_venv, todo_api_of

# What the tests use, through this script.
__all__ = ["format_comparison", "parse_args", "side_order", "summarize"]

# Connections beyond the two pools: the harness's own, each service's listener, the migrations.
SPARE_CONNECTIONS = 10


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--against",
        type=Path,
        required=True,
        metavar="DIR",
        help="checkout of the older commit (before)",
    )
    parser.add_argument("--rounds", type=int, default=6, help="bursts per side and workload")
    parser.add_argument("--duration", type=float, default=3, help="seconds per burst")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of each warm-up burst")
    parser.add_argument("--workloads", default="list,get,create,toggle")
    parser.add_argument("--connections", type=int, default=64)
    add_sides_arguments(parser, port=18300, label="compare")
    args = parser.parse_args(argv)
    args.workloads = workload_list(parser, args.workloads)
    args.against = checkout_directory(parser, args.against)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("error: the comparison needs two cores: one for the servers, one for wrk")
    ensure_wrk()
    before = args.against
    sides = {
        "before": Side("before", before, todo_api_of(before), side_args(args, "before", 2)),
        "after": Side("after", ROOT, THIS_TODO_API, side_args(args, "after", 0)),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    output = args.output or RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{args.label}.json"
    created: list[Side] = []
    try:
        for side in sides.values():
            asyncio.run(create_database(args.server, side.database))
            created.append(side)
        with tempfile.TemporaryDirectory() as workdir, auth_mode("hs256", args.port + 1) as auth:
            pool = _pool_that_fits(args)
            for side in sides.values():
                side.prepare(Path(workdir) / side.name, auth, pool)
            return _compare(args, sides, output)
    finally:
        for side in created:
            asyncio.run(drop_database(args.server, side.database))


def _pool_that_fits(args: argparse.Namespace) -> int:
    """run.py's pool size, a connection per wrk connection, unless two of them would not fit in
    PostgreSQL's max_connections: each server keeps its pool open while the other is loaded,
    and a refused connection would be an error. Both sides get the same pool either way."""
    room = asyncio.run(free_connections(args.server)) - SPARE_CONNECTIONS
    return max(1, min(pool_size(args.connections, 1), room // 2))


def _compare(args: argparse.Namespace, sides: dict[str, Side], output: Path) -> int:
    print(_setup_line(args, sides), flush=True)
    with ExitStack() as stack:
        stack.enter_context(database_on(args.server, args.database_cpus))
        for side in sides.values():
            server = stack.enter_context(
                running_server(side.args, side.env, side.folder, side.todo_api)
            )
            side.bench = Bench(side.args, server, side.database, side.db_url, side.data)
        for workload in args.workloads:
            for side in sides.values():
                _warm_up(side, workload, args.connections)
        bursts = [
            _burst(sides[name], workload, number, args)
            for number in range(args.rounds)
            for workload in args.workloads
            for name in side_order(number)
        ]
    summaries = [summarize(workload, bursts) for workload in args.workloads]
    result = {
        "when": output.stem,
        "label": args.label,
        "setup": _setup(args, sides),
        "summary": summaries,
        "bursts": bursts,
    }
    output.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(format_comparison(summaries))
    print(f"Results: {output}")
    if any(burst["errors"] for burst in bursts):
        print("ERRORS: some bursts had non-2xx answers or socket errors (the errors column)")
        return 1
    return 0


def _warm_up(side: Side, workload: str, connections: int) -> None:
    assert side.bench is not None
    side.bench.warm_up(workload, connections)
    reset_after_run(workload, side.db_url, side.last_seeded_id)


def _burst(side: Side, workload: str, number: int, args: argparse.Namespace) -> dict[str, Any]:
    """One measured wrk burst against one side, then its writes undone."""
    assert side.bench is not None
    run = side.bench.measure(workload, args.connections)
    keys_stored = reset_after_run(workload, side.db_url, side.last_seeded_id)
    burst = {
        "round": number,
        "side": side.name,
        "workload": workload,
        "rps": round(run.rps, 1),
        "server_cpu_ms_per_request": round(run.cpu_ms_per_request, 4),
        "db_cpu_ms_per_request": round(run.db_cpu_ms_per_request, 4),
        "p50_ms": round(run.latency_ms("p50"), 2),
        "p99_ms": round(run.latency_ms("p99"), 2),
        "errors": run.errors,
        "idempotency_keys_stored": keys_stored,
        "wrk": run.wrk,
    }
    print(
        f"round {number + 1}/{args.rounds} {workload:<12} {side.name:<6} "
        f"{burst['server_cpu_ms_per_request']:.3f} ms/req  {burst['rps']:>7.0f} req/s  "
        f"p99 {burst['p99_ms']:.2f} ms  {run.errors} errors",
        flush=True,
    )
    return burst


def _checkout(side: Side) -> dict[str, Any]:
    """Which code a side served: its commit, and whether files outside bench/ differ from it
    (bench/ itself is this checkout's harness, copied in to measure an older commit)."""

    def git(*command: str) -> str:
        completed = subprocess.run(
            ["git", "-C", str(side.checkout), *command], capture_output=True, text=True
        )
        return completed.stdout.strip()

    return {
        "checkout": str(side.checkout),
        "commit": git("rev-parse", "--short", "HEAD") or None,
        "code_changed": bool(git("status", "--porcelain", "--", ".", ":!bench")),
        "server": " ".join(server_command(side.args, side.todo_api)),
    }


def _setup(args: argparse.Namespace, sides: dict[str, Side]) -> dict[str, Any]:
    env = sides["after"].env
    return {
        **{side.name: _checkout(side) for side in sides.values()},
        "server_cpus": args.server_cpus,
        "wrk_cpus": args.wrk_cpus,
        "wrk_threads": args.wrk_threads,
        "database_cpus": args.database_cpus,
        "connections": args.connections,
        "db_pool_size": env["DB_POOL_SIZE"],
        "log_level": args.log_level,
        "log_json": args.log_json,
        "rate_limit": env["RATE_LIMIT"],
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "order": "ABBA: before first in even rounds (0, 2, ...), after first in odd ones",
        "cpus": os.cpu_count(),
        "extra_env": args.env,
    }


def _setup_line(args: argparse.Namespace, sides: dict[str, Side]) -> str:
    env = sides["after"].env
    described = []
    for side in sides.values():
        info = _checkout(side)
        changed = ", uncommitted changes outside bench/" if info["code_changed"] else ""
        described.append(
            f"{side.name}: {info['checkout']} ({info['commit']}{changed}) on port {side.args.port}"
        )
    pool_note = ""
    if int(env["DB_POOL_SIZE"]) < args.connections:
        pool_note = " (two pools of one per connection would pass PostgreSQL's max_connections)"
    return (
        f"{'; '.join(described)}\n"
        f"Servers: todo-api serve --workers 1, both pinned to CPU {args.server_cpus} (taskset); "
        f"wrk -t{args.wrk_threads} -c{args.connections} pinned to CPU {args.wrk_cpus}; "
        f"{_database_placement(args)}; LOG_LEVEL={args.log_level} LOG_JSON={args.log_json} "
        f"DB_POOL_SIZE={env['DB_POOL_SIZE']}{pool_note} DB_MAX_OVERFLOW={env['DB_MAX_OVERFLOW']} "
        f"RATE_LIMIT={env['RATE_LIMIT']}; {args.rounds} rounds of one {args.duration:g}s burst "
        f"per side and workload, ABBA order (the first side alternates), after a "
        f"{args.warmup:g}s warm-up"
    )


def _database_placement(args: argparse.Namespace) -> str:
    if args.database_cpus:
        return f"PostgreSQL's processes pinned to CPU {args.database_cpus}"
    return "PostgreSQL's processes on any CPU"


if __name__ == "__main__":
    reexec_in_venv(__file__)
    sys.exit(main(sys.argv[1:]))
