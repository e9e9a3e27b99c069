"""Schema migrations on a database that already holds tasks (SQLite, or PostgreSQL from
TEST_DATABASE_URL): what existed before a revision is carried into it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Connection, String, column, insert, table

from tests.conftest import auth, client_for, make_settings, new_user, postgres_database
from todo_api.database import create_engine
from todo_api.http.app import create_app
from todo_api.migrations import alembic_config, upgrade
from todo_api.schema import UTCDateTime


@asynccontextmanager
async def empty_database(tmp_path: Path) -> AsyncIterator[str]:
    server = os.environ.get("TEST_DATABASE_URL")
    if server:
        async with postgres_database(server) as url:
            yield url
    else:
        yield f"sqlite+aiosqlite:///{tmp_path / 'tasks.db'}"


# The tasks table as revision 0002 left it (todo_api.schema describes the newest revision).
table_0002 = table(
    "tasks",
    column("user_id", String),
    column("title", String),
    column("description", String),
    column("completed", Boolean),
    column("created_at", UTCDateTime()),
    column("updated_at", UTCDateTime()),
)


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
                insert(table_0002),
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

    from todo_api.schema import is_declared, metadata

    async with empty_database(tmp_path) as url:
        engine = create_engine(make_settings(url))
        try:
            async with engine.begin() as connection:
                await connection.run_sync(upgrade_to("head"))
                differences = await connection.run_sync(
                    lambda sync: compare_metadata(
                        MigrationContext.configure(sync, opts={"include_object": is_declared}),
                        metadata,
                    )
                )
        finally:
            await engine.dispose()
    assert differences == []


async def test_organizing_fields_arrive_on_the_tasks_already_stored(tmp_path: Path) -> None:
    """Revision 0003 adds priorities, tags, dates, recurrence and versions: every task stored
    before it is still there, unchanged, with the defaults, and takes the new fields."""
    owner = new_user()
    earlier = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    rows = [
        {"user_id": owner, "title": title, "description": description, "completed": done}
        | {"created_at": earlier, "updated_at": earlier}
        for title, description, done in [
            ("Über den Fluss", "Straße", False),
            ("Plain", None, True),
            *((f"bulk {n}", f"row {n}", n % 2 == 0) for n in range(1500)),
        ]
    ]
    async with empty_database(tmp_path) as url:
        engine = create_engine(make_settings(url))
        async with engine.begin() as connection:
            await connection.run_sync(upgrade_to("0002"))
            await connection.execute(insert(table_0002), rows)
        await upgrade(engine)

        application = create_app(make_settings(url), engine=engine)
        async with client_for(application) as client:
            response = await client.get(
                "/api/tasks", params={"limit": 1000, "offset": 0}, headers=auth(owner)
            )
            listed = response.json()
            rest = await client.get(
                "/api/tasks", params={"limit": 1000, "offset": 1000}, headers=auth(owner)
            )
            listed += rest.json()
            assert response.headers["x-total-count"] == str(len(rows))
            assert sorted(task["title"] for task in listed) == sorted(row["title"] for row in rows)
            by_title = {task["title"]: task for task in listed}
            for row in rows:
                task = by_title[row["title"]]
                assert (task["description"], task["completed"]) == (
                    row["description"],
                    row["completed"],
                )
                assert task["priority"] == "medium"
                assert task["tags"] == []
                assert (task["due_at"], task["remind_at"], task["recurrence"]) == (None,) * 3
                assert (task["timezone"], task["version"]) == ("UTC", 1)
                assert task["created_at"] == task["updated_at"] == "2026-01-05T12:00:00Z"
                # Completed before completion times were kept: the last change stands in.
                assert task["completed_at"] == (task["updated_at"] if row["completed"] else None)

            old = by_title["Über den Fluss"]
            changed = await client.put(
                f"/api/tasks/{old['id']}",
                json={"tags": ["Trip"], "priority": "high"},
                headers=auth(owner),
            )
            assert changed.status_code == 200
            assert (changed.json()["tags"], changed.json()["version"]) == (["trip"], 2)
        await application.state.services.aclose()


async def test_tag_rows_take_their_tasks_columns_and_follow_them(tmp_path: Path) -> None:
    """Revision 0005 copies each task's priority, due date and creation time into its tag rows:
    every tag row stored before it gets them, and later changes, by the service or by SQL
    written by hand, move them too."""
    owner = new_user()
    earlier = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    tasks_0003 = table(
        "tasks",
        *(column(name) for name in ("id", "user_id", "title", "priority", "tags")),
        column("due_at", UTCDateTime()),
        column("created_at", UTCDateTime()),
        column("updated_at", UTCDateTime()),
    )
    tags_0003 = table("task_tags", column("task_id"), column("tag"), column("user_id"))
    count = 300
    rows = [
        {"id": 10_000 + n, "user_id": owner, "title": f"t{n}", "priority": 1 + n % 3}
        | {"tags": "home,work" if n % 2 else "work", "created_at": earlier + timedelta(minutes=n)}
        | {"updated_at": earlier, "due_at": earlier + timedelta(days=n % 7) if n % 5 else None}
        for n in range(count)
    ]
    tag_rows = [
        {"task_id": row["id"], "tag": tag, "user_id": owner}
        for row in rows
        for tag in row["tags"].split(",")
    ]
    async with empty_database(tmp_path) as url:
        engine = create_engine(make_settings(url))
        async with engine.begin() as connection:
            await connection.run_sync(upgrade_to("0003"))
            await connection.execute(insert(tasks_0003), rows)
            await connection.execute(insert(tags_0003), tag_rows)
        await upgrade(engine)

        application = create_app(make_settings(url), engine=engine)
        async with client_for(application) as client:

            async def listed(**params: str) -> list[int]:
                response = await client.get(
                    "/api/tasks", params=params | {"limit": "1000"}, headers=auth(owner)
                )
                assert response.status_code == 200, response.text
                ids = [task["id"] for task in response.json()]
                assert response.headers["x-total-count"] == str(len(ids))
                return ids

            def by_due(kept: list[dict[str, Any]]) -> list[int]:
                dated = sorted((row for row in kept if row["due_at"]), key=lambda row: -row["id"])
                dated.sort(key=lambda row: row["due_at"])
                undated = sorted((row["id"] for row in kept if not row["due_at"]), reverse=True)
                return [row["id"] for row in dated] + undated

            high_home = [row for row in rows if row["priority"] == 3 and "home" in row["tags"]]
            assert await listed(tag="home", priority="high", sort="due_at") == by_due(high_home)
            newest = sorted(rows, key=lambda row: row["created_at"], reverse=True)
            assert await listed(tag="work") == [row["id"] for row in newest]
            assert await listed(tag="home", has_due="false") == sorted(
                (row["id"] for row in rows if "home" in row["tags"] and not row["due_at"]),
                reverse=True,
            )

            # A change made with SQL, not through the service.
            async with engine.begin() as connection:
                await connection.execute(
                    tasks_0003.update()
                    .where(tasks_0003.c.user_id == owner)
                    .values(priority=3, due_at=None)
                )
            everything = [row["id"] for row in newest]
            assert await listed(tag="work", priority="high", has_due="false") == everything
        await application.state.services.aclose()


async def test_fewer_indexes_keep_every_task_and_one_next_occurrence(tmp_path: Path) -> None:
    """Revision 0006 drops the (user_id, completed) index and keeps `previous_id`'s unique
    index for next occurrences only: every task stored before it is listed as before, by
    status too, and a series stored before it still gets at most one next occurrence per
    task."""
    from todo_api.schema import tasks

    owner = new_user()
    due = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    plain = {"user_id": owner, "completed": False, "completed_at": None, "recurrence": None}
    plain |= {"due_at": None, "occurrence": 1, "previous_id": None}
    series = plain | {"title": "water plants", "recurrence": "FREQ=DAILY", "due_at": due}
    rows = [
        series | {"id": 500, "completed": True, "completed_at": due},
        series | {"id": 501, "occurrence": 2, "previous_id": 500, "due_at": due + timedelta(1)},
        *(
            plain | {"id": 1000 + n, "title": f"plain {n}", "completed": n % 4 == 0}
            for n in range(400)
        ),
    ]
    async with empty_database(tmp_path) as url:
        engine = create_engine(make_settings(url))
        async with engine.begin() as connection:
            await connection.run_sync(upgrade_to("0005"))
            await connection.execute(insert(tasks), rows)
        await upgrade(engine)

        application = create_app(make_settings(url), engine=engine)
        async with client_for(application) as client:

            async def listed(status: str) -> list[int]:
                response = await client.get(
                    "/api/tasks", params={"status": status, "limit": 1000}, headers=auth(owner)
                )
                assert response.status_code == 200, response.text
                assert response.headers["x-total-count"] == str(len(response.json()))
                return sorted(task["id"] for task in response.json())

            done = sorted(row["id"] for row in rows if row.get("completed"))
            assert await listed("completed") == done
            assert await listed("pending") == sorted({row["id"] for row in rows} - set(done))

            # The stored series' first task already has its next occurrence (501).
            reopened = await client.patch("/api/tasks/500/complete", headers=auth(owner))
            again = await client.patch("/api/tasks/500/complete", headers=auth(owner))
            assert (reopened.status_code, again.status_code) == (200, 200)
            assert again.json()["completed"] is True
            completed_next = await client.patch("/api/tasks/501/complete", headers=auth(owner))
            assert completed_next.status_code == 200
            everything = await client.get("/api/tasks", params={"limit": 1000}, headers=auth(owner))
            series_ids = [t["id"] for t in everything.json() if t["title"] == "water plants"]
            assert len(series_ids) == 3  # 500, 501, and 501's own next occurrence
            assert {500, 501} < set(series_ids)
        await application.state.services.aclose()
