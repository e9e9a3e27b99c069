"""Command-line options that bench/run.py and bench/compare.py share."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.config import MCP_WORKLOADS, WORKLOADS


def add_server_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="PostgreSQL server to make the throwaway database on [env BENCH_POSTGRES_URL]",
    )


def add_placement_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the server and wrk run, and the server's logging and extra settings."""
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list of the server")
    parser.add_argument("--wrk-cpus", default="1", help="taskset CPU list of wrk")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument(
        "--database-cpus",
        default=None,
        help="taskset CPU list for the local PostgreSQL server's processes during the run "
        "(restored after; default: left alone)",
    )
    parser.add_argument("--log-level", default="INFO", help="the server's LOG_LEVEL")
    parser.add_argument(
        "--log-json", default="true", choices=("true", "false"), help="the server's LOG_JSON"
    )
    parser.add_argument(
        "--env", action="append", default=[], help="extra NAME=VALUE for the server"
    )


def workload_list(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """The comma-separated --workloads, each one that workload.lua knows."""
    workloads = [w for w in text.split(",") if w]
    unknown = set(workloads) - {*WORKLOADS, *MCP_WORKLOADS}
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    return workloads


def parse_cpus(spec: str) -> set[int]:
    """A taskset CPU list ("1", "0,2", "2-3") as a set."""
    cpus: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def add_result_arguments(parser: argparse.ArgumentParser, label: str | None) -> None:
    parser.add_argument("--label", default=label, help="name of this run in bench/results/")
    parser.add_argument("--output", type=Path, default=None, help="JSON result file")


def checkout_directory(parser: argparse.ArgumentParser, path: Path) -> Path:
    """The --against checkout, resolved; a usage error if it is not a directory."""
    if not path.is_dir():
        parser.error(f"--against {path}: no such directory")
    return path.resolve()


def add_sides_arguments(parser: argparse.ArgumentParser, *, port: int, label: str) -> None:
    """What bench/compare.py and bench/instructions.py share: the PostgreSQL server, the ports
    (this checkout's, and port+2 for the one --against names), placement and results."""
    add_server_argument(parser)
    parser.add_argument(
        "--port", type=int, default=port, help="this checkout's server; the other's is port+2"
    )
    add_placement_arguments(parser)
    add_result_arguments(parser, label)
