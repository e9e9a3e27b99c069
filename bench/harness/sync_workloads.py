"""What versions, idempotency keys and the change feed add to a write.

The workloads `update` (a PUT of a new title), `create-idem` and `toggle-idem` (create and toggle,
each request with a fresh `Idempotency-Key`) run like every other workload (workload.lua). This
module keeps what is particular to them: the data the keyed workloads leave behind, the check
that every keyed request was a first request (each stored its response, none was a replay), and
the comparison of server CPU per request with a run made before these features (`--baseline`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.database import connect, reset_writes

# Each keyed workload is its plain workload plus the key.
KEYED_WORKLOADS = {"create-idem": "create", "toggle-idem": "toggle"}
WRITE_WORKLOADS = ("create", "toggle", "update")

# Server CPU per request at most this many times the same plain write's before these features.
CPU_FACTOR_WITHOUT_KEY = 1.15
CPU_FACTOR_WITH_KEY = 1.40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a results JSON of create, toggle and update from before versions, idempotency "
        "keys and the change feed: print each write's CPU per request against it",
    )


async def reset_keyed_writes(url: str, last_seeded_id: int) -> int:
    """Remove what a keyed workload left (its tasks and stored responses), so the next run
    starts from the seeded data; the number of stored responses removed."""
    await reset_writes(url, last_seeded_id)
    connection = await connect(url)
    try:
        # A database from before idempotency keys has no table for them (a --baseline run).
        if await connection.fetchval("SELECT to_regclass('idempotency_keys') IS NULL"):
            return 0
        stored: int = await connection.fetchval("SELECT count(*) FROM idempotency_keys")
        await connection.execute("DELETE FROM idempotency_keys")
        await connection.execute("VACUUM ANALYZE idempotency_keys")
    finally:
        await connection.close()
    return stored


def with_first_request_check(summary: dict[str, Any], stored: list[int]) -> dict[str, Any]:
    """A keyed workload's row, with the responses its runs stored and whether every request
    was a first request. wrk counts only the answers it read before the run ended, so a run
    stores at least as many responses as it counts requests, and fewer only if keys repeated."""
    counted = [run["requests"] for run in summary["runs"]]
    summary["idempotency_keys_stored"] = stored
    summary["checks"]["first_requests"] = all(
        keys >= requests for keys, requests in zip(stored, counted, strict=True)
    )
    return summary


def cost_against_baseline(
    rows: list[dict[str, Any]], baseline: dict[str, Any]
) -> list[dict[str, Any]]:
    """Server CPU per request of each write row against the baseline's plain write at the
    same connection count (a keyed write against the plain one: what the key adds on top)."""
    before = {
        (row["workload"], row["connections"]): row["server_cpu_ms_per_request"]
        for row in baseline["rows"]
    }
    costs = []
    for row in rows:
        workload = row["workload"]
        plain = KEYED_WORKLOADS.get(workload, workload)
        if plain not in WRITE_WORKLOADS or (plain, row["connections"]) not in before:
            continue
        baseline_cpu = before[(plain, row["connections"])]
        factor = CPU_FACTOR_WITH_KEY if workload in KEYED_WORKLOADS else CPU_FACTOR_WITHOUT_KEY
        ratio = row["server_cpu_ms_per_request"] / baseline_cpu
        costs.append(
            {
                "workload": workload,
                "connections": row["connections"],
                "baseline_workload": plain,
                "baseline_cpu_ms_per_request": baseline_cpu,
                "cpu_ms_per_request": row["server_cpu_ms_per_request"],
                "ratio": round(ratio, 3),
                "target_ratio": factor,
                "met": ratio <= factor,
            }
        )
    return costs


def load_baseline(path: Path) -> dict[str, Any]:
    baseline: dict[str, Any] = json.loads(path.read_text())
    return baseline


def format_costs(costs: list[dict[str, Any]], baseline_label: str) -> str:
    lines = [f"Server CPU per request against {baseline_label} (before versions, keys, feed):"]
    for cost in costs:
        lines.append(
            f"  {cost['workload']:<12} {cost['connections']:>3} conns: "
            f"{cost['cpu_ms_per_request']:.3f} ms against {cost['baseline_workload']} "
            f"{cost['baseline_cpu_ms_per_request']:.3f} ms: "
            f"{100 * (cost['ratio'] - 1):+.1f} % "
            f"({'met' if cost['met'] else 'NOT met'}, target "
            f"<= {100 * (cost['target_ratio'] - 1):+.0f} %)"
        )
    if not costs:
        lines.append("  (no write workload in both runs at the same connection count)")
    return "\n".join(lines)
