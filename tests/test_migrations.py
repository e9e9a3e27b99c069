"""Schema migrations on a database that already holds tasks (SQLite, or PostgreSQL from
TEST_DATABASE_URL): what existed before a revision is carried into it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, insert

from tests.conftest import auth, client_for, make_settings, new_user, postgres_database
from todo_api.database import create_engine
from todo_api.http.app import create_app
from todo_api.migrations import alembic_config, upgrade
from todo_api.schema import tasks


@asynccontextmanager
async def empty_database(tmp_path: Path) -> AsyncIterator[str]:
    server = os.environ.get("TEST_DATABASE_URL")
    if server:
        async with postgres_database(server) as url:
            yield url
    else:
        yield f"sqlite+aiosqlite:///{tmp_path / 'tasks.db'}"


def upgrade_to(revision: str) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        from alembic import command

        command.upgrade(alembic_config(connection), revision)

    return run


async def test_task_counts_start_from_the_tasks_already_stored(tmp_path: Path) -> None:
    """Revision 0002 keeps per-user counts; a database upgraded with tasks in it must count
    them, and the counts must go on following the writes after the upgrade."""
    busy, idle = new_user(), new_user()
    now = datetime.now(UTC)
    async with empty_database(tmp_path) as url:
        engine = create_engine(make_settings(url))
        async with engine.begin() as connection:
            await connection.run_sync(upgrade_to("0001"))
            await connection.execute(
                insert(tasks),
                [
                    {"user_id": busy, "title": f"t{n}", "completed": n % 3 == 0}
                    | {"created_at": now, "updated_at": now}
                    for n in range(7)
                ],
            )
        await upgrade(engine)

        application = create_app(make_settings(url), engine=engine)
        async with client_for(application) as client:

            async def total(user: str, status: str) -> str:
                response = await client.get(
                    "/api/tasks", params={"status": status}, headers=auth(user)
                )
                return response.headers["x-total-count"]

            assert [await total(busy, s) for s in ("all", "pending", "completed")] == [
                "7",
                "4",
                "3",
            ]
            assert await total(idle, "all") == "0"
            created = await client.post("/api/tasks", json={"title": "after"}, headers=auth(busy))
            assert created.status_code == 201
            assert [await total(busy, s) for s in ("all", "pending", "completed")] == [
                "8",
                "5",
                "3",
            ]
        await application.state.services.aclose()


async def test_migrations_build_the_schema_the_code_declares(tmp_path: Path) -> None:
    """Every table, column and index in todo_api.schema comes from a migration, and nothing
    the migrations leave behind is missing from it: the two never drift apart."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from todo_api.schema import metadata

    async with empty_database(tmp_path) as url:
        engine = create_engine(make_settings(url))
        try:
            async with engine.begin() as connection:
                await connection.run_sync(upgrade_to("head"))
                differences = await connection.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
                )
        finally:
            await engine.dispose()
    assert differences == []
