"""Pruning: tombstones older than the retention and idempotency keys older than a day go; a
cursor from before a forgotten tombstone is refused (410) instead of silently missing it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import func, select, update

from tests.conftest import auth, client_for, new_user
from todo_api.schema import idempotency_keys, task_feed
from todo_api.tasks.maintenance import prune

RETENTION = timedelta(days=30)


async def test_old_tombstones_and_keys_are_pruned_and_older_cursors_are_gone(app: FastAPI) -> None:
    services = app.state.services
    user = new_user()
    async with client_for(app) as client:
        headers = auth(user)
        kept = (await client.post("/api/tasks", json={"title": "kept"}, headers=headers)).json()
        gone = (await client.post("/api/tasks", json={"title": "gone"}, headers=headers)).json()
        keyed = headers | {"Idempotency-Key": "old-key"}
        await client.post("/api/tasks", json={"title": "keyed"}, headers=keyed)
        before_delete = (await client.get("/api/tasks/changes", headers=headers)).json()["cursor"]
        await client.delete(f"/api/tasks/{gone['id']}", headers=headers)
        after_delete = (await client.get("/api/tasks/changes", headers=headers)).json()["cursor"]

        # A month and a day pass.
        long_ago = datetime.now(UTC) - RETENTION - timedelta(days=1)
        async with services.engine.begin() as connection:
            await connection.execute(
                update(task_feed).where(task_feed.c.user_id == user).values(changed_at=long_ago)
            )
            await connection.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.user_id == user)
                .values(created_at=long_ago)
            )
        pruned = await prune(services.runner, now=datetime.now(UTC), tombstone_age=RETENTION)
        assert pruned >= 2, pruned
        # Running it again finds nothing more of this user's (and does no harm).
        await prune(services.runner, now=datetime.now(UTC), tombstone_age=RETENTION)

        async with services.engine.connect() as connection:
            tombstones = await connection.scalar(
                select(func.count())
                .select_from(task_feed)
                .where(task_feed.c.user_id == user, task_feed.c.deleted)
            )
        assert tombstones == 0
        stale = await client.get(
            "/api/tasks/changes", params={"since": before_delete}, headers=headers
        )
        assert stale.status_code == 410
        fresh = await client.get(
            "/api/tasks/changes", params={"since": after_delete}, headers=headers
        )
        assert fresh.status_code == 200
        assert fresh.json()["changes"] == []
        snapshot = (await client.get("/api/tasks/changes", headers=headers)).json()
        assert sorted(item["task"]["title"] for item in snapshot["changes"]) == ["kept", "keyed"]
        assert kept["id"] in {item["task"]["id"] for item in snapshot["changes"]}
        # The expired key is free again: a new write, not a replay.
        reused = await client.post("/api/tasks", json={"title": "new"}, headers=keyed)
        assert reused.status_code == 201
        assert "idempotent-replayed" not in reused.headers
