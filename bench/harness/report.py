"""Measurements (CPU time, memory) and how runs are summarised, checked and printed."""

from __future__ import annotations

import json
import os
import re
import statistics
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import P99_TARGETS_AT_16, RSS_LIMIT_MB, STALL_FACTOR, TARGETS

# --------------------------------------------------------------------------- measurements


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (0 for one that is gone)."""
    ticks = 0
    for pid in pids:
        with suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds([pid]) for pid in pids}


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process has had, in MB."""
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def parse_wrk_output(output: str) -> dict[str, Any]:
    """The JSON line the Lua done() hook prints."""
    for line in output.splitlines():
        if line.startswith("BENCH_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
            return result
    raise RuntimeError(f"wrk printed no BENCH_RESULT line:\n{output}")


def error_count(wrk_result: dict[str, Any]) -> int:
    return sum(wrk_result["errors"].values())


@dataclass
class Run:
    """One measured wrk run and what the server spent on it."""

    wrk: dict[str, Any]
    server_cpu_s: float
    db_cpu_s: float

    @property
    def requests(self) -> int:
        return int(self.wrk["requests"])

    @property
    def rps(self) -> float:
        return self.requests / (self.wrk["duration_us"] / 1e6)

    def latency_ms(self, name: str) -> float:
        return float(self.wrk["latency_us"][name]) / 1000

    @property
    def errors(self) -> int:
        return error_count(self.wrk)

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / max(self.requests, 1)

    @property
    def db_cpu_ms_per_request(self) -> float:
        return 1000 * self.db_cpu_s / max(self.requests, 1)


@dataclass
class Row:
    """Every run of one workload at one connection count, summarised by medians."""

    workload: str
    connections: int
    runs: list[Run] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)

    def median(self, value: str) -> float:
        getter = {
            "rps": lambda run: run.rps,
            "p50": lambda run: run.latency_ms("p50"),
            "p90": lambda run: run.latency_ms("p90"),
            "p99": lambda run: run.latency_ms("p99"),
            "cpu": lambda run: run.cpu_ms_per_request,
            "db_cpu": lambda run: run.db_cpu_ms_per_request,
        }[value]
        return statistics.median(getter(run) for run in self.runs)

    @property
    def errors(self) -> int:
        return sum(run.errors for run in self.runs)

    def summary(self) -> dict[str, Any]:
        p50, p99 = self.median("p50"), self.median("p99")
        summary: dict[str, Any] = {
            "workload": self.workload,
            "connections": self.connections,
            "rps": round(self.median("rps"), 1),
            "p50_ms": round(p50, 2),
            "p90_ms": round(self.median("p90"), 2),
            "p99_ms": round(p99, 2),
            "p99_over_p50": round(p99 / p50, 2) if p50 else None,
            "errors": self.errors,
            "valid": self.errors == 0,
            "server_cpu_ms_per_request": round(self.median("cpu"), 3),
            "db_cpu_ms_per_request": round(self.median("db_cpu"), 3),
            "peak_rss_mb_per_worker": self.rss_mb,
            "runs": [
                {
                    "rps": round(run.rps, 1),
                    "server_cpu_ms_per_request": round(run.cpu_ms_per_request, 3),
                    "db_cpu_ms_per_request": round(run.db_cpu_ms_per_request, 3),
                    **run.wrk,
                }
                for run in self.runs
            ],
        }
        summary["checks"] = checks_for(summary)
        return summary


def checks_for(row: dict[str, Any]) -> dict[str, bool]:
    """Which targets a summarised row meets (throughput and p99 only at 64 connections)."""
    checks = {
        "no_errors": row["errors"] == 0,
        "no_stalls": row["p99_over_p50"] is not None and row["p99_over_p50"] < STALL_FACTOR,
        "rss": all(mb < RSS_LIMIT_MB for mb in row["peak_rss_mb_per_worker"]),
    }
    if row["connections"] == 64 and row["workload"] in TARGETS:
        rps, p99 = TARGETS[row["workload"]]
        checks["rps"] = row["rps"] >= rps
        checks["p99"] = row["p99_ms"] <= p99
    if row["connections"] == 16 and row["workload"] in P99_TARGETS_AT_16:
        checks["p99"] = row["p99_ms"] <= P99_TARGETS_AT_16[row["workload"]]
    return checks


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'workload':<10} {'conns':>5} {'req/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
        f"{'p99/p50':>7} {'errors':>6} {'cpu ms/req':>10} {'db ms/req':>9} {'RSS MB':>7}  "
        "target"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        target = ""
        verdict = "met" if all(row["checks"].values()) else "NOT met"
        if "rps" in row["checks"]:
            rps, p99 = TARGETS[row["workload"]]
            target = f">={rps} req/s, p99<={p99:g} ms: {verdict}"
        elif "p99" in row["checks"]:
            target = f"p99<={P99_TARGETS_AT_16[row['workload']]:g} ms: {verdict}"
        elif not all(row["checks"].values()):
            target = "NOT met: " + ", ".join(k for k, ok in row["checks"].items() if not ok)
        rss = max(row["peak_rss_mb_per_worker"] or [0.0])
        lines.append(
            f"{row['workload']:<10} {row['connections']:>5} {row['rps']:>8.0f} "
            f"{row['p50_ms']:>7.2f} {row['p90_ms']:>7.2f} {row['p99_ms']:>7.2f} "
            f"{row['p99_over_p50'] or 0:>7.1f} {row['errors']:>6} "
            f"{row['server_cpu_ms_per_request']:>10.3f} {row['db_cpu_ms_per_request']:>9.3f} "
            f"{rss:>7.1f}  {target}"
        )
    return "\n".join(lines)


def top_functions(collapsed: Path, count: int = 25) -> str:
    """The functions holding the most samples (own and inclusive) of a py-spy raw profile."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack:
            continue
        n = int(samples)
        # Frames without their line numbers, so a function counts once.
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        if any(frame.startswith("Thread._bootstrap ") for frame in frames):
            continue  # idle threads (anyio's thread pool), not request work
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
    lines = [f"{total} samples"]
    for title, table in (("own", own), ("inclusive", inclusive)):
        lines.append(f"-- top {count} by {title} time")
        for frame, n in sorted(table.items(), key=lambda item: -item[1])[:count]:
            lines.append(f"{100 * n / max(total, 1):5.1f}%  {frame}")
    return "\n".join(lines)
