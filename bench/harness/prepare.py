"""What a server under test is given: its environment, its migrated and seeded database, the
data files of the workloads, and the seeded data back after a run that wrote."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness import sync_workloads
from harness.config import (
    BIG_USER,
    BIG_USER_FACTORS,
    BIG_USER_TASKS,
    LIST_QUERIES,
    MCP_WORKLOADS,
    SERVICE_VARIABLES,
    TASKS_PER_USER,
    WORKLOADS,
)
from harness.database import reset_writes, seed
from harness.load import write_lua_data
from harness.tokens import Auth

# Runs of these add tasks, which the next run would list and count.
WRITING_WORKLOADS = ("create", "mixed", "mcp-add")


def pool_size(connections: int, workers: int) -> int:
    """A connection for each request a worker has in flight: one waiting for the pool is both
    slower and more costly than one served (RESULTS.md, step 8)."""
    return -(-connections // workers)


def server_environment(
    args: argparse.Namespace,
    db_url: str,
    auth: Auth,
    pool: int,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The service's settings as production has them, with `extra` and then `--env` on top."""
    return {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES} | {
        "ENVIRONMENT": "production",
        "DATABASE_URL": db_url,
        "LOG_LEVEL": args.log_level,
        "LOG_JSON": args.log_json,
        "DB_POOL_SIZE": str(pool),
        "DB_MAX_OVERFLOW": "0",
        # wrk sends each user's requests far faster than a person would, so measure without a
        # limit (--env RATE_LIMIT=1000000/minute, and REDIS_URL, measure one that never refuses).
        "RATE_LIMIT": "0",
        **auth.environment,
        **(extra or {}),
        **dict(item.split("=", 1) for item in args.env),
    }


def migrate(todo_api: Path, env: dict[str, str], workdir: Path) -> None:
    """`todo-api migrate` of the checkout under test: each checkout makes its own schema."""
    completed = subprocess.run(
        [str(todo_api), "migrate"], cwd=workdir, env=env, capture_output=True, text=True
    )
    if completed.returncode != 0:
        raise SystemExit(f"error: {todo_api} migrate failed:\n{completed.stderr}")


@dataclass
class Seeded:
    ids_by_user: dict[str, list[int]]
    seconds: float

    @property
    def users(self) -> list[str]:
        """The users with TASKS_PER_USER tasks each (all but the big one)."""
        return sorted(user for user in self.ids_by_user if user != BIG_USER)

    @property
    def last_id(self) -> int:
        """Tasks with higher ids were written by the load (reset_after_run removes them)."""
        return max(max(ids) for ids in self.ids_by_user.values())

    def describe(self) -> str:
        return (
            f"Seeded {len(self.users)} users x {TASKS_PER_USER} tasks and one user with "
            f"{BIG_USER_TASKS} tasks in {self.seconds:.1f}s"
        )


def seed_database(db_url: str) -> Seeded:
    started = time.monotonic()
    ids_by_user = asyncio.run(seed(db_url))
    return Seeded(ids_by_user, time.monotonic() - started)


def write_workload_data(workdir: Path, seeded: Seeded, auth: Auth) -> dict[str, Path]:
    """The Lua data file of every workload (workload.lua reads it), by workload name."""
    users = seeded.users
    tokens = {user: auth.token(user) for user in [*users, BIG_USER]}
    data: dict[str, Path] = {}

    def write_data(name: str, workload: str, on: list[str]) -> None:
        data[name] = workdir / f"{name}.lua"
        query = LIST_QUERIES.get(workload, "")
        ids = [seeded.ids_by_user[u] for u in on]
        write_lua_data(data[name], workload, [tokens[u] for u in on], ids, query)

    for workload in MCP_WORKLOADS:
        write_data(workload, workload, users)
    for workload in WORKLOADS:
        # "search-big": the search workload, every request from the 10,000-task user.
        base = workload.removesuffix("-big")
        write_data(workload, base, [BIG_USER] if base != workload else users)
    for workload in BIG_USER_FACTORS:
        write_data(f"{workload}@big", workload, [BIG_USER])
        write_data(f"{workload}@small", workload, users[:1])
    return data


def reset_after_run(workload: str, db_url: str, last_seeded_id: int) -> int | None:
    """Back to the seeded data after a run that wrote, so the next run reads what every run
    reads; for a keyed workload, the number of responses its run stored (else None)."""
    if workload in sync_workloads.KEYED_WORKLOADS:
        return asyncio.run(sync_workloads.reset_keyed_writes(db_url, last_seeded_id))
    if workload in WRITING_WORKLOADS:
        asyncio.run(reset_writes(db_url, last_seeded_id))
    return None
