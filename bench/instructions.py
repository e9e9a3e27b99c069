#!/usr/bin/env python3
"""Instructions per request of this checkout's server (and another's), counted by callgrind.

    .venv/bin/python bench/instructions.py --against ../old --workloads create,toggle,get
    .venv/bin/python bench/instructions.py --workloads get --idle-streams 1000 \\
        --env STREAM_KEEPALIVE_SECONDS=600

CPU time per request drifts by tens of percent on a shared machine, even side by side
(bench/compare.py); the number of instructions a server executes for the same requests does
not. Each server runs under `valgrind --tool=callgrind` (one worker, pinned to --server-cpus,
its own throwaway database as in compare.py), with counting off until a workload has been
warmed up. Then one wrk burst of --duration seconds is counted, every thread of the server
(its event loop's background work included), and divided by the requests wrk completed.

What it does not count: the kernel's work (system calls, the network), and the time an
instruction takes (cache misses): it says whether the server's code does more or less, not
how long that takes. Under valgrind the server runs some fifty times slower, so work done per
second rather than per request (keep-alive comments of open streams, reminder polls) would
weigh about fifty times more per request than at full speed: it is counted on its own for
--idle-seconds after each burst, with no load, and its share of the burst's seconds is taken
off before dividing. A burst is counted from a quiet server until the server is quiet again,
so the requests still in flight when wrk stops (one per connection) are counted, and divided
by, too.

With --idle-streams N, each workload is counted three times on each side: before N idle
streams are open (one user each, as run.py --streams), with them open, and after they closed.
Results go to bench/results/<time>-<label>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

# The harness package sits next to this script; loaded as a module (tests), it is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.config import RESULTS, ROOT
from harness.database import create_database, drop_database
from harness.load import ensure_debian_package, ensure_wrk, run_wrk
from harness.options import (
    add_sides_arguments,
    checkout_directory,
    parse_cpus,
    workload_list,
)
from harness.placement import database_on
from harness.prepare import pool_size, reset_after_run
from harness.report import cpu_seconds, error_count
from harness.server import THIS_TODO_API, Server, running_server
from harness.sides import Side, side_args
from harness.streams import open_files_needed, open_streams, raise_open_files_limit
from harness.tokens import Auth, auth_mode
from harness.venv import reexec_in_venv, todo_api_of

STARTUP_SECONDS = 600  # the service imports and migrates under valgrind: minutes on a busy core
DUMP_SECONDS = 60  # for callgrind to write a dump it was asked for
QUIET_WITHIN_SECONDS = 300  # for the server to answer what it was sent before a burst ended
QUIET_CPU_SHARE = 0.5
WRK_TIMEOUT = 120  # seconds: 64 requests at once take a server under valgrind a few seconds


@dataclass(frozen=True)
class Count:
    """One counted burst."""

    side: str
    workload: str
    phase: str  # "-" without streams; "closed", "open", "closed after" with --idle-streams
    requests: int  # answered within the burst, as wrk counts them
    in_flight: int  # sent, unanswered when the burst ended, and served all the same
    errors: int
    instructions: int  # from the burst's start until the server was quiet again
    seconds: float  # that long
    idle_instructions: int  # during --idle-seconds with no load, right after
    idle_seconds: float

    @property
    def background_per_second(self) -> float:
        """What the server does without requests (keep-alives, polls), per second."""
        return self.idle_instructions / self.idle_seconds if self.idle_seconds else 0.0

    @property
    def per_request(self) -> float:
        """The burst's instructions less the background's share of its seconds, per request
        served."""
        served = self.requests + self.in_flight
        if not self.requests:
            return 0.0
        return (self.instructions - self.background_per_second * self.seconds) / served


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--against", type=Path, default=None, metavar="DIR", help="older checkout")
    parser.add_argument("--workloads", default="create,toggle,get")
    parser.add_argument("--duration", type=float, default=20, help="seconds of each counted burst")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of each warm-up burst")
    parser.add_argument(
        "--idle-seconds", type=float, default=10, help="seconds of background counted after each"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--idle-streams", type=int, default=0, help="count each workload without and with these"
    )
    add_sides_arguments(parser, port=18500, label="instructions")
    args = parser.parse_args(argv)
    args.workloads = workload_list(parser, args.workloads)
    if args.against is not None:
        args.against = checkout_directory(parser, args.against)
    if args.idle_streams < 0:
        parser.error("--idle-streams must not be negative")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    ensure_wrk()
    ensure_debian_package("callgrind_control", "valgrind")
    if args.idle_streams:
        raise_open_files_limit(open_files_needed(_streams_options(args)))
    sides = [Side("after", ROOT, THIS_TODO_API, side_args(args, "after", 0))]
    if args.against is not None:
        before = args.against
        sides.insert(0, Side("before", before, todo_api_of(before), side_args(args, "before", 2)))
    counts: list[Count] = []
    with tempfile.TemporaryDirectory() as workdir, auth_mode("hs256", args.port + 1) as auth:
        for side in sides:
            asyncio.run(create_database(args.server, side.database))
            try:
                side.prepare(Path(workdir) / side.name, auth, pool_size(args.connections, 1))
                counts += _count_side(args, side, auth, Path(workdir))
            finally:
                asyncio.run(drop_database(args.server, side.database))
    RESULTS.mkdir(parents=True, exist_ok=True)
    output = args.output or RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{args.label}.json"
    rows = [
        asdict(count)
        | {
            "per_request": round(count.per_request),
            "background_per_second": round(count.background_per_second),
        }
        for count in counts
    ]
    setup = {key: str(value) for key, value in vars(args).items()}
    output.write_text(json.dumps({"setup": setup, "counts": rows}, indent=2) + "\n")
    print()
    print(format_counts(counts))
    print(f"Results: {output}")
    return 1 if any(count.errors for count in counts) else 0


def _streams_options(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(idle_streams=args.idle_streams, fanout_streams=0)


def _count_side(args: argparse.Namespace, side: Side, auth: Auth, workdir: Path) -> list[Count]:
    dumps = workdir / f"{side.name}.callgrind"
    wrapper = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",  # nothing counted (and the start-up ten times faster) until asked
        f"--callgrind-out-file={dumps}",
    ]
    counts: list[Count] = []
    with ExitStack() as stack:
        stack.enter_context(database_on(args.server, args.database_cpus))
        server = stack.enter_context(
            running_server(
                side.args,
                side.env,
                side.folder,
                side.todo_api,
                wrapper=wrapper,
                startup_seconds=STARTUP_SECONDS,
            )
        )
        print(f"{side.name}: {side.checkout} under callgrind at {server.url}", flush=True)

        def count_all(phase: str) -> None:
            for workload in args.workloads:
                count = _count(args, side, server, dumps, workload, phase)
                print(
                    f"{side.name:<6} {workload:<12} {phase:<12} {count.requests:>6} requests "
                    f"{count.per_request / 1e6:8.3f} M instructions each, background "
                    f"{count.background_per_second / 1e6:.2f} M/s",
                    flush=True,
                )
                counts.append(count)

        if not args.idle_streams:
            count_all("-")
            return counts
        count_all("closed")
        tokens = [auth.token(f"bench-idle-{n:04d}") for n in range(args.idle_streams)]
        with open_streams(server.url, tokens, cpus=parse_cpus(args.wrk_cpus)):
            count_all("open")
        count_all("closed after")
    return counts


def _count(
    args: argparse.Namespace, side: Side, server: Server, dumps: Path, workload: str, phase: str
) -> Count:
    """One warm-up burst uncounted, then one counted burst; the seeded data back after each."""
    data = side.data[workload]
    pid = server.process.pid  # taskset and valgrind exec in place: the service's own pid
    run_wrk(args, server.url, data, args.connections, args.warmup, timeout_seconds=WRK_TIMEOUT)
    _wait_until_quiet(pid)
    reset_after_run(workload, side.db_url, side.last_seeded_id)
    _callgrind_control("--zero", str(pid))
    _callgrind_control("--instr=on", str(pid))
    started = time.monotonic()
    wrk = run_wrk(
        args, server.url, data, args.connections, args.duration, timeout_seconds=WRK_TIMEOUT
    )
    _wait_until_quiet(pid)
    _callgrind_control("--instr=off", str(pid))
    seconds = time.monotonic() - started
    instructions = _dump(str(pid), dumps, f"{side.name}-{workload}-{phase}")
    _callgrind_control("--instr=on", str(pid))
    time.sleep(args.idle_seconds)
    _callgrind_control("--instr=off", str(pid))
    idle = _dump(str(pid), dumps, f"{side.name}-{workload}-{phase}-idle")
    reset_after_run(workload, side.db_url, side.last_seeded_id)
    return Count(
        side=side.name,
        workload=workload,
        phase=phase,
        requests=int(wrk["requests"]),
        in_flight=args.connections,
        errors=error_count(wrk),
        instructions=instructions,
        seconds=seconds,
        idle_instructions=idle,
        idle_seconds=args.idle_seconds,
    )


def _wait_until_quiet(pid: int) -> None:
    """Until the server has served what was sent to it: under valgrind it takes seconds to
    answer the requests in flight when wrk stops. Quiet: under half a core for a second (a
    server with idle streams keeps sending keep-alive comments, slowly under valgrind)."""
    deadline = time.monotonic() + QUIET_WITHIN_SECONDS
    before = cpu_seconds([pid])
    while time.monotonic() < deadline:
        time.sleep(1)
        now = cpu_seconds([pid])
        if now - before < QUIET_CPU_SHARE:
            return
        before = now
    raise SystemExit(f"error: the server was still busy {QUIET_WITHIN_SECONDS} s after a burst")


def _callgrind_control(*arguments: str) -> None:
    subprocess.run(["callgrind_control", *arguments], capture_output=True, check=True)


def _dump(pid: str, dumps: Path, name: str) -> int:
    """Has callgrind write what it counted since the last dump or zeroing; its instruction
    total."""
    before = set(dumps.parent.glob(dumps.name + ".*"))
    _callgrind_control(f"--dump={name}", pid)
    deadline = time.monotonic() + DUMP_SECONDS
    while time.monotonic() < deadline:
        for written in set(dumps.parent.glob(dumps.name + ".*")) - before:
            total = read_total(written.read_text(errors="replace"))
            if total is not None:
                return total
        time.sleep(0.5)
    raise SystemExit(f"error: callgrind wrote no dump {name} within {DUMP_SECONDS} s")


def read_total(dump: str) -> int | None:
    """The instruction total of a callgrind dump (its `totals:` line), None if not yet written."""
    for line in dump.splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    return None


def format_counts(counts: list[Count]) -> str:
    """A line per workload and phase: each side's instructions per request, and the change
    against the first side (before), or against the same side's run without streams."""
    lines = [
        f"{'workload':<12} {'phase':<12} {'side':<6} {'requests':>8} {'M instr/req':>11} "
        f"{'change':>8} {'background M/s':>14} {'errors':>6}"
    ]
    lines.append("-" * len(lines[0]))
    baselines: dict[str, float] = {}
    for count in counts:
        key = count.workload if count.phase == "-" else f"{count.side}/{count.workload}"
        baseline = baselines.setdefault(key, count.per_request)
        change = f"{100 * (count.per_request / baseline - 1):+.1f} %" if baseline else "n/a"
        lines.append(
            f"{count.workload:<12} {count.phase:<12} {count.side:<6} {count.requests:>8} "
            f"{count.per_request / 1e6:>11.3f} {change:>8} "
            f"{count.background_per_second / 1e6:>14.2f} {count.errors:>6}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    reexec_in_venv(__file__)
    raise SystemExit(main(sys.argv[1:]))
