"""Live streams: what open idle streams cost a worker, and how fast a change reaches them.

- Idle streams: the compared workloads (get, toggle) run with no stream open, then `--idle-streams`
  (1,000) streams are opened, each by a user of its own who writes nothing (so they stay idle:
  only keep-alive comments), the worker's resident memory is read before and after, the same
  workloads run with the streams open, and once more after they are closed; `--stream-rounds`
  (3) times. Each open run is compared with the mean of the closed runs on either side of it,
  so a machine whose speed drifts does not pass for the streams' cost, and the slowdown is the
  median over the rounds, so one burst disturbed by a neighbour does not decide it.
- Fan-out: `--fanout-streams` (100) streams of ONE user, then `--fanout-writes` title changes of
  that user's tasks through the API, one at a time: from each write's response to the arrival of
  its event on each stream.

The stream clients are httpx streams on an asyncio loop in a thread of the harness, pinned to
wrk's CPUs, so they neither take the server's core nor stop the harness from running wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness.load import Bench
from harness.options import parse_cpus
from harness.report import Row, cpu_seconds
from harness.tokens import Auth

IDLE_STREAMS = 1000
FANOUT_STREAMS = 100
FANOUT_WRITES = 100
STREAM_ROUNDS = 3
COMPARED_WORKLOADS = ("get", "toggle")

# Targets, one worker.
IDLE_RSS_LIMIT_MB = 100.0  # more resident memory with the idle streams open
IDLE_SLOWDOWN_LIMIT = 0.10  # throughput of the compared workloads lost with them open
FANOUT_P99_LIMIT_S = 1.0  # from a write's response to its event on each stream

STREAM_PATH = "/api/tasks/stream"
OPENING_AT_ONCE = 50  # streams being opened at a time: each open reads the feed head
EVENT_TIMEOUT_S = 5.0  # an event later than this after its write counts as missed
SETTLE_S = 2.0  # after opening the idle streams, before reading the memory

T = TypeVar("T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--streams",
        action="store_true",
        help="also measure idle live streams (memory, slowdown of get and toggle) and the "
        "fan-out of a change to many streams of one user",
    )
    parser.add_argument(
        "--idle-streams", type=int, default=IDLE_STREAMS, help="idle streams, one per user"
    )
    parser.add_argument(
        "--stream-rounds",
        type=int,
        default=STREAM_ROUNDS,
        help="times the idle streams are opened, each open run between two closed ones",
    )
    parser.add_argument(
        "--fanout-streams", type=int, default=FANOUT_STREAMS, help="streams of the one user"
    )
    parser.add_argument(
        "--fanout-writes", type=int, default=FANOUT_WRITES, help="writes timed to every stream"
    )


def server_environment(args: argparse.Namespace) -> dict[str, str]:
    """What the server needs for the stream measurements: room for the fan-out's streams of one
    user (the default cap, STREAMS_PER_USER=10, would refuse them)."""
    if not args.streams:
        return {}
    return {"STREAMS_PER_USER": str(max(args.fanout_streams, 10))}


def raise_open_files_limit(needed: int) -> None:
    """Each stream is a socket in the harness and one in the server, which inherits this limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(
            f"error: {needed} open files needed for the streams, the hard limit is {hard} "
            "(raise it, e.g. `ulimit -n`, or open fewer with --idle-streams)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def open_files_needed(args: argparse.Namespace) -> int:
    return int(max(args.idle_streams, args.fanout_streams)) + 1024  # + wrk, the pool, the log


def current_rss_mb(pid: int) -> float:
    """VmRSS: the resident memory of the process now, in MB (0 for one that is gone)."""
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# --------------------------------------------------------------------------- stream clients


@dataclass
class Event:
    kind: str
    data: str
    arrived: float  # time.monotonic() when its last line was read

    def item(self) -> dict[str, Any]:
        item: dict[str, Any] = json.loads(self.data)
        return item


class EventStream:
    """One open stream, read in a task of its own: events are queued with their arrival time,
    keep-alive comments are read and dropped."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    @property
    def ended(self) -> bool:
        return self._reader.done()

    async def _read(self) -> None:
        kind, data = "message", ""
        with suppress(Exception):
            async for line in self._response.aiter_lines():
                if line.startswith("event:"):
                    kind = line.removeprefix("event:").strip()
                elif line.startswith("data:"):
                    data = line.removeprefix("data:").strip()
                elif not line and data:
                    self._events.put_nowait(Event(kind, data, time.monotonic()))
                    kind, data = "message", ""

    async def arrival_of(self, task_id: int, version: int, deadline: float) -> float | None:
        """When the change of task `task_id` to `version` (or later) arrived; None if it did not
        by the monotonic time `deadline`."""
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    event = await self._events.get()
            except TimeoutError:
                return None
            task = event.item().get("task") or {}
            if task.get("id") == task_id and task.get("version", 0) >= version:
                return event.arrived

    async def aclose(self) -> None:
        self._reader.cancel()
        with suppress(asyncio.CancelledError):
            await self._reader
        await self._response.aclose()


class StreamClient:
    """Many streams on one httpx client: no pool limit, no read timeout (idle streams hear
    nothing but a comment every 15 seconds)."""

    def __init__(self, url: str) -> None:
        import httpx

        self.http = httpx.AsyncClient(
            base_url=url,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
            timeout=httpx.Timeout(30.0, read=None),
        )
        self.streams: list[EventStream] = []

    async def open(self, tokens: list[str]) -> None:
        """One stream per token, opened OPENING_AT_ONCE at a time; returns when all are open."""
        gate = asyncio.Semaphore(OPENING_AT_ONCE)

        async def open_one(token: str) -> EventStream:
            async with gate:
                request = self.http.build_request(
                    "GET", STREAM_PATH, headers={"Authorization": f"Bearer {token}"}
                )
                response = await self.http.send(request, stream=True)
                if response.status_code != 200:
                    detail = (await response.aread()).decode(errors="replace")
                    await response.aclose()
                    raise RuntimeError(f"a stream was refused: {response.status_code} {detail}")
                return EventStream(response)

        opened = await asyncio.gather(
            *(open_one(token) for token in tokens), return_exceptions=True
        )
        self.streams += [stream for stream in opened if isinstance(stream, EventStream)]
        for failure in opened:
            if isinstance(failure, BaseException):
                raise failure

    def ended(self) -> int:
        """How many streams the server has ended."""
        return sum(stream.ended for stream in self.streams)

    async def aclose(self) -> None:
        await asyncio.gather(*(stream.aclose() for stream in self.streams))
        self.streams = []
        await self.http.aclose()


class ClientThread:
    """An asyncio loop in a thread of its own, pinned to `cpus` (a thread's affinity is its
    own on Linux): it runs the stream clients while the harness waits for wrk."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        self._cpus = cpus
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="stream-clients", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self._cpus:
            os.sched_setaffinity(0, self._cpus)
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 300.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


@contextmanager
def open_streams(
    url: str, tokens: list[str], *, cpus: set[int] | None = None
) -> Iterator[tuple[ClientThread, StreamClient]]:
    """One stream per token, open until the block ends, served by a ClientThread."""
    thread = ClientThread(cpus)
    try:
        client = thread.run(_make_client(url))
        try:
            thread.run(client.open(tokens))
            yield thread, client
        finally:
            thread.run(client.aclose())
    finally:
        thread.close()


async def _make_client(url: str) -> StreamClient:
    return StreamClient(url)  # made on the loop that will use it


# --------------------------------------------------------------------------- fan-out


@dataclass
class FanOut:
    streams: int
    writes: int
    latencies_s: list[float] = field(default_factory=list)
    missed: int = 0

    def summary(self) -> dict[str, Any]:
        latencies = sorted(self.latencies_s)
        return {
            "streams": self.streams,
            "writes": self.writes,
            "events": len(latencies),
            "missed": self.missed,
            "p50_ms": round(1000 * _percentile(latencies, 50), 2),
            "p99_ms": round(1000 * _percentile(latencies, 99), 2),
            "max_ms": round(1000 * max(latencies, default=0.0), 2),
            "met": self.missed == 0
            and bool(latencies)
            and _percentile(latencies, 99) < FANOUT_P99_LIMIT_S,
        }


def _percentile(ordered: list[float], percent: float) -> float:
    """Nearest rank, as wrk reports its percentiles."""
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * percent // 100))
    return ordered[int(rank) - 1]


async def measure_fanout(url: str, token: str, *, streams: int, writes: int) -> FanOut:
    """`streams` streams of the token's user, then `writes` title changes of its tasks, one at a
    time: each stream's delay from a write's response to that change's event. An event can be
    read before the response (the change is committed, and announced, before the answer is
    sent): that delay counts as 0."""
    result = FanOut(streams, writes)
    client = StreamClient(url)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        task_ids = []
        for number in range(min(writes, 10)):
            created = await client.http.post(
                "/api/tasks", json={"title": f"Fan-out task {number}"}, headers=headers
            )
            created.raise_for_status()
            task_ids.append(created.json()["id"])
        await client.open([token] * streams)
        for number in range(writes):
            task_id = task_ids[number % len(task_ids)]
            response = await client.http.put(
                f"/api/tasks/{task_id}", json={"title": f"Fan-out write {number}"}, headers=headers
            )
            answered = time.monotonic()
            response.raise_for_status()
            version = response.json()["version"]
            deadline = answered + EVENT_TIMEOUT_S
            arrivals = await asyncio.gather(
                *(stream.arrival_of(task_id, version, deadline) for stream in client.streams)
            )
            for arrived in arrivals:
                if arrived is None:
                    result.missed += 1
                else:
                    result.latencies_s.append(max(0.0, arrived - answered))
    finally:
        await client.aclose()
    return result


# --------------------------------------------------------------------------- the measurements


def measure_streams(bench: Bench, auth: Auth) -> dict[str, Any]:
    """Both stream measurements against the running server, as one JSON-ready dict."""
    args = bench.args
    connections = max(args.connections)
    cpus = parse_cpus(args.wrk_cpus)
    idle_tokens = [auth.token(f"bench-idle-{n:04d}") for n in range(args.idle_streams)]

    # Closed, open, closed, open, ..., closed: each open run against the closed runs on
    # either side of it, so that the machine's drift is not taken for the streams' cost.
    closed = [_compared_rows(bench, connections, "closed 0")]
    opened = []
    rss_before = _worker_rss(bench)
    rss_open = rss_after_load = 0.0
    idle_cpu_percent = 0.0
    ended = 0
    for number in range(args.stream_rounds):
        with open_streams(bench.server.url, idle_tokens, cpus=cpus) as (_thread, client):
            if number == 0:
                cpu_before = cpu_seconds(bench.server.all_pids)
                time.sleep(SETTLE_S)
                idle_cpu = cpu_seconds(bench.server.all_pids) - cpu_before
                idle_cpu_percent = 100 * idle_cpu / SETTLE_S
                rss_open = _worker_rss(bench)
            opened.append(_compared_rows(bench, connections, f"open {number}"))
            rss_after_load = max(rss_after_load, _worker_rss(bench))
            ended += client.ended()
        closed.append(_compared_rows(bench, connections, f"closed {number + 1}"))

    fanout_thread = ClientThread(cpus)
    try:
        fanout = fanout_thread.run(
            measure_fanout(
                bench.server.url,
                auth.token("bench-fanout-user"),
                streams=args.fanout_streams,
                writes=args.fanout_writes,
            )
        )
    finally:
        fanout_thread.close()
    return {
        "idle": idle_summary(
            streams=args.idle_streams,
            ended=ended,
            rss_mb={"before": rss_before, "open": rss_open, "open_after_load": rss_after_load},
            idle_cpu_percent=idle_cpu_percent,
            closed=closed,
            opened=opened,
        ),
        "fanout": fanout.summary(),
    }


def _compared_rows(bench: Bench, connections: int, label: str) -> list[dict[str, Any]]:
    rows = []
    for workload in COMPARED_WORKLOADS:
        row = Row(workload, connections)
        bench.warm_up(workload, connections)
        row.runs = [bench.measure(workload, connections) for _ in range(bench.args.runs)]
        row.rss_mb = bench.rss()
        rows.append(row.summary() | {"streams": label})
    return rows


def _worker_rss(bench: Bench) -> float:
    return round(sum(current_rss_mb(pid) for pid in bench.server.worker_pids), 1)


def idle_summary(
    *,
    streams: int,
    ended: int,
    rss_mb: dict[str, float],
    idle_cpu_percent: float,
    closed: list[list[dict[str, Any]]],
    opened: list[list[dict[str, Any]]],
) -> dict[str, Any]:
    """The memory the open streams took (the larger of right after opening them and after the
    workloads ran beside them), and each workload's slowdown with the streams open: the median
    over rounds of the open run against the mean of the closed runs before and after it.

    `closed` holds one more round than `opened`: closed[n] and closed[n + 1] surround opened[n]
    (each a list of rows, one per compared workload)."""
    if len(closed) != len(opened) + 1:
        raise ValueError("each open round needs a closed round on either side")
    added = max(rss_mb["open"], rss_mb["open_after_load"]) - rss_mb["before"]
    compared = []
    for index, workload in enumerate(COMPARED_WORKLOADS):
        closed_rows = [rows[index] for rows in closed]
        open_rows = [rows[index] for rows in opened]
        slowdowns = [
            _mean("rps", before, after) / with_streams["rps"] - 1 if with_streams["rps"] else 1.0
            for before, with_streams, after in zip(
                closed_rows[:-1], open_rows, closed_rows[1:], strict=True
            )
        ]
        slowdown = statistics.median(slowdowns)
        compared.append(
            {
                "workload": workload,
                "connections": closed_rows[0]["connections"],
                "rps_closed": _mean("rps", *closed_rows),
                "rps_closed_runs": [row["rps"] for row in closed_rows],
                "rps_open": _mean("rps", *open_rows),
                "rps_open_runs": [row["rps"] for row in open_rows],
                "slowdowns": [round(value, 3) for value in slowdowns],
                "slowdown": round(slowdown, 3),
                "p99_ms_closed": _mean("p99_ms", *closed_rows),
                "p99_ms_open": _mean("p99_ms", *open_rows),
                "cpu_ms_closed": _mean("server_cpu_ms_per_request", *closed_rows),
                "cpu_ms_open": _mean("server_cpu_ms_per_request", *open_rows),
                "met": slowdown <= IDLE_SLOWDOWN_LIMIT,
                "valid": all(row["valid"] for row in closed_rows + open_rows),
            }
        )
    return {
        "streams": streams,
        "ended_early": ended,
        "rounds": len(opened),
        "rss_mb": rss_mb,
        "rss_added_mb": round(added, 1),
        "rss_met": added < IDLE_RSS_LIMIT_MB,
        "idle_cpu_percent": round(idle_cpu_percent, 1),
        "compared": compared,
        "rows": [row for rows in closed + opened for row in rows],
        "valid": ended == 0 and all(row["valid"] for row in compared),
    }


def _mean(name: str, *rows: dict[str, Any]) -> float:
    return round(sum(float(row[name]) for row in rows) / len(rows), 3)


def streams_valid(result: dict[str, Any]) -> bool:
    return bool(result["idle"]["valid"]) and result["fanout"]["missed"] == 0


def format_streams(result: dict[str, Any]) -> str:
    idle, fanout = result["idle"], result["fanout"]
    rss = idle["rss_mb"]
    lines = [
        f"Idle streams: {idle['streams']} open ({idle['ended_early']} ended early), worker RSS "
        f"{rss['before']:.1f} MB before, {rss['open']:.1f} MB with them open, "
        f"{rss['open_after_load']:.1f} MB after the workloads beside them: "
        f"+{idle['rss_added_mb']:.1f} MB ({_verdict(idle['rss_met'])}, target "
        f"< {IDLE_RSS_LIMIT_MB:g} MB); server CPU while idle {idle['idle_cpu_percent']:.1f} %",
    ]
    for row in idle["compared"]:
        rounds = ", ".join(f"{100 * value:+.1f}" for value in row["slowdowns"])
        lines.append(
            f"  {row['workload']:<8} {row['connections']:>3} conns: {row['rps_closed']:.0f} "
            f"req/s without them, {row['rps_open']:.0f} with: {100 * row['slowdown']:+.1f} % "
            f"slower, median of {len(row['slowdowns'])} rounds ({rounds}) "
            f"({_verdict(row['met'])}, target <= {100 * IDLE_SLOWDOWN_LIMIT:g} %); p99 "
            f"{row['p99_ms_closed']:.2f} -> {row['p99_ms_open']:.2f} ms; CPU "
            f"{row['cpu_ms_closed']:.3f} -> {row['cpu_ms_open']:.3f} ms/req"
        )
    lines.append(
        f"Fan-out: {fanout['writes']} writes to {fanout['streams']} streams of one user: "
        f"{fanout['events']} events, {fanout['missed']} missed; from the write's response "
        f"p50 {fanout['p50_ms']:.1f} ms, p99 {fanout['p99_ms']:.1f} ms, max "
        f"{fanout['max_ms']:.1f} ms ({_verdict(fanout['met'])}, target p99 "
        f"< {1000 * FANOUT_P99_LIMIT_S:g} ms)"
    )
    return "\n".join(lines)


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"
