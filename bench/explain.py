#!/usr/bin/env python3
"""EXPLAIN (ANALYZE) of the list's search, filter and sort queries, as the service sends them,
for the benchmark's 10,000-task user on a database seeded as the benchmark seeds it.

    .venv/bin/python bench/explain.py [--server postgresql://postgres@127.0.0.1:5432/postgres]

Makes a throwaway database, migrates it, seeds it (harness.database.seed), prints each plan,
and drops the database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
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


async def explain(url: str) -> str:
    from todo_api.database.engine import asyncpg_dialect
    from todo_api.database.runner import _CompiledStatement
    from todo_api.tasks.listing import list_statement
    from todo_api.tasks.repository import OWNERSHIP
    from todo_api.tasks.schemas import TaskQuery

    connection = await connect(url)
    reports = []
    try:
        for name, query_string in LIST_QUERIES.items():
            values = parse_qs(query_string)
            lists = ("tag", "priority")
            query = TaskQuery.model_validate(
                {key: value if key in lists else value[0] for key, value in values.items()}
            )
            statement, params = list_statement(query, OWNERSHIP)
            compiled = _CompiledStatement.of(statement, asyncpg_dialect())
            arguments = compiled.arguments(params | {"owner": BIG_USER})
            rows = await connection.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {compiled.sql}", *arguments
            )
            plan = "\n".join(row[0] for row in rows)
            reports.append(f"### {name}: GET /api/tasks?{query_string}\n\n```\n{plan}\n```")
    finally:
        await connection.close()
    return "\n\n".join(reports)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
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
        print(asyncio.run(explain(url)))
    finally:
        asyncio.run(drop_database(args.server, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
