#!/usr/bin/env python3
"""EXPLAIN (ANALYZE) of the list's search, filter and sort queries, as the service sends them,
for the benchmark's 10,000-task user on a database seeded as the benchmark seeds it; and how
long each statement alone takes for that user and for a 50-task user.

    .venv/bin/python bench/explain.py [--server postgresql://postgres@127.0.0.1:5432/postgres]
    .venv/bin/python bench/explain.py --repeat 500   # the statement timings only

Makes a throwaway database, migrates it, seeds it (harness.database.seed), prints each plan
(as a prepared statement's generic plan: asyncpg prepares every statement, and PostgreSQL
switches to the generic plan after five executions) or the timings, and drops the database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.config import BIG_USER, LIST_QUERIES
from harness.database import (
    connect,
    create_database,
    database_url,
    drop_database,
    seed,
)

SMALL_USER = "bench-user-000"
OWNER = "owner-placeholder"  # the compiled arguments' owner, replaced by each user


def _statements() -> dict[str, tuple[str, list[Any]]]:
    """Each list query's page statement as asyncpg runs it: its SQL, and its arguments but
    for the owner's (the first)."""
    from todo_api.database.engine import asyncpg_dialect
    from todo_api.database.runner import _CompiledStatement
    from todo_api.tasks.listing import list_statement
    from todo_api.tasks.repository import OWNERSHIP
    from todo_api.tasks.schemas import TaskQuery

    statements = {}
    for name, query_string in LIST_QUERIES.items():
        values = parse_qs(query_string)
        lists = ("tag", "priority")
        query = TaskQuery.model_validate(
            {key: value if key in lists else value[0] for key, value in values.items()}
        )
        listed, params = list_statement(query, OWNERSHIP)
        compiled = _CompiledStatement.of(listed.page, asyncpg_dialect())
        arguments = compiled.arguments(params | {"owner": OWNER})
        assert arguments[0] == OWNER
        statements[name] = (compiled.sql, arguments[1:])
    return statements


def _literal(value: Any) -> str:
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


async def explain(url: str) -> str:
    connection = await connect(url)
    reports = []
    try:
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        for n, (name, (sql, arguments)) in enumerate(_statements().items()):
            await connection.execute(f"PREPARE list_{n} AS {sql}")
            values = ", ".join(map(_literal, [BIG_USER, *arguments]))
            rows = await connection.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE list_{n}({values})"
            )
            plan = "\n".join(row[0] for row in rows)
            query_string = LIST_QUERIES[name]
            reports.append(f"### {name}: GET /api/tasks?{query_string}\n\n```\n{plan}\n```")
    finally:
        await connection.close()
    return "\n\n".join(reports)


async def timings(url: str, repeat: int) -> str:
    """The median time of each statement, prepared, for the big user and a 50-task user."""
    connection = await connect(url)
    lines = [f"statement alone, median of {repeat}: user with 10,000 tasks / with 50 tasks"]
    try:
        for name, (sql, arguments) in _statements().items():
            prepared = await connection.prepare(sql)
            medians = {}
            for user in (BIG_USER, SMALL_USER):
                for _ in range(20):  # past the switch to the generic plan
                    await prepared.fetch(user, *arguments)
                times = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    await prepared.fetch(user, *arguments)
                    times.append(time.perf_counter() - started)
                medians[user] = statistics.median(times) * 1000
            big, small = medians[BIG_USER], medians[SMALL_USER]
            lines.append(f"{name:8} {big:7.3f} ms / {small:7.3f} ms = {big / small:5.2f}")
    finally:
        await connection.close()
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--repeat", type=int, default=0, help="time each statement this many times, no plans"
    )
    args = parser.parse_args()
    name = f"todo_explain_{uuid.uuid4().hex[:10]}"
    url = database_url(args.server, name)
    asyncio.run(create_database(args.server, name))
    try:
        with tempfile.TemporaryDirectory() as workdir:
            subprocess.run(
                [str(Path(sys.executable).parent / "todo-api"), "migrate"],
                cwd=workdir,
                env=os.environ | {"DATABASE_URL": url, "BETTER_AUTH_SECRET": "x" * 32},
                check=True,
                capture_output=True,
            )
        asyncio.run(seed(url))
        if args.repeat:
            print(asyncio.run(timings(url, args.repeat)))
        else:
            print(asyncio.run(explain(url)))
    finally:
        asyncio.run(drop_database(args.server, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
