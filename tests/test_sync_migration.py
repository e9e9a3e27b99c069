"""Revision 0004 (feed, idempotency keys, reminders) on a database that already holds tasks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, func, insert, select

from tests.conftest import auth, client_for, make_settings, new_user
from tests.test_feed import Copy, apply
from tests.test_migrations import empty_database, upgrade_to
from todo_api.database import create_engine
from todo_api.http.app import create_app
from todo_api.migrations import alembic_config
from todo_api.schema import tasks

BEFORE = "0003"


def downgrade_to(revision: str) -> object:
    def run(connection: Connection) -> None:
        from alembic import command

        command.downgrade(alembic_config(connection), revision)

    return run


async def test_existing_tasks_enter_the_feed_and_keep_every_row(tmp_path: Path) -> None:
    busy, other = new_user(), new_user()
    now = datetime.now(UTC)
    async with empty_database(tmp_path) as url:
        engine = create_engine(make_settings(url))
        async with engine.begin() as connection:
            await connection.run_sync(upgrade_to(BEFORE))
            await connection.execute(
                insert(tasks),
                [
                    {"user_id": user, "title": f"{user} {n}", "completed": n % 2 == 0}
                    | {"created_at": now, "updated_at": now}
                    for user in (busy, other)
                    for n in range(5)
                ],
            )
        # Down and up again as well: the triggers and rows survive the round trip.
        async with engine.begin() as connection:
            await connection.run_sync(upgrade_to("head"))
            await connection.run_sync(downgrade_to(BEFORE))
            await connection.run_sync(upgrade_to("head"))
            stored = await connection.scalar(select(func.count()).select_from(tasks))
        assert stored == 10

        application = create_app(make_settings(url), engine=engine)
        async with client_for(application) as client:
            listed = await client.get("/api/tasks", headers=auth(busy))
            assert listed.headers["x-total-count"] == "5"
            copy: Copy = {}
            snapshot = await client.get("/api/tasks/changes", headers=auth(busy))
            for item in snapshot.json()["changes"]:
                apply(copy, item)
            assert copy == {task["id"]: task for task in listed.json()}

            cursor = snapshot.json()["cursor"]
            removed = listed.json()[0]["id"]
            await client.delete(f"/api/tasks/{removed}", headers=auth(busy))
            created = await client.post("/api/tasks", json={"title": "new"}, headers=auth(busy))
            after = await client.get(
                "/api/tasks/changes", params={"since": cursor}, headers=auth(busy)
            )
            assert [item["op"] for item in after.json()["changes"]] == ["delete", "upsert"]
            assert after.json()["changes"][1]["task"] == created.json()
            completed = await client.get(
                "/api/tasks", params={"status": "completed"}, headers=auth(other)
            )
            assert completed.headers["x-total-count"] == "3"
        await application.state.services.aclose()
