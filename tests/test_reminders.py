"""Reminders with two real server processes on one database: each due reminder reaches the feed
and the streams exactly once, including those that came due while no server ran."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from tests.conftest import SECRET, auth, client_for, make_settings, new_user
from tests.server import running_server, service_environment
from tests.sse import Event, EventReader, open_stream
from todo_api.database import create_engine
from todo_api.schema import task_counts


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def change_count(database_url: str, user: str) -> int:
    engine = create_engine(make_settings(database_url))
    try:
        async with engine.connect() as connection:
            query = select(task_counts.c.change_seq).where(task_counts.c.user_id == user)
            return int((await connection.execute(query)).scalar_one())
    finally:
        await engine.dispose()


async def events_for(stream: EventReader, seconds: float) -> list[Event]:
    events = []
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            events.append(await stream.next(within=left))
        except TimeoutError:
            break
    return events


async def test_each_reminder_comes_once_from_two_processes(
    app: FastAPI, database_url: str, tmp_path: Path
) -> None:
    user = new_user()
    now = datetime.now(UTC)
    # Made while no server runs: these came due "while the service was down".
    async with client_for(app) as local:

        async def create(title: str, remind_at: datetime, **extra: object) -> dict[str, object]:
            body = {"title": title, "remind_at": stamp(remind_at), **extra}
            response = await local.post("/api/tasks", json=body, headers=auth(user))
            assert response.status_code == 201, response.text
            task: dict[str, object] = response.json()
            return task

        overdue = [await create(f"overdue {n}", now - timedelta(minutes=n + 1)) for n in range(5)]
        done = await create("done", now - timedelta(minutes=1))
        await local.patch(f"/api/tasks/{done['id']}/complete", headers=auth(user))
        soon = await create("soon", now + timedelta(seconds=3))
        cursor = (await local.get("/api/tasks/changes", headers=auth(user))).json()["cursor"]
    writes = 5 + 2 + 1

    env = service_environment(
        DATABASE_URL=database_url,
        BETTER_AUTH_SECRET=SECRET,
        WORKERS="1",
        REMINDER_INTERVAL_SECONDS="0.2",
    )
    with (
        running_server(tmp_path, env) as first,
        running_server(tmp_path, env) as second,
    ):
        async with (
            httpx.AsyncClient(base_url=first.url, headers=auth(user), timeout=30) as one,
            httpx.AsyncClient(base_url=second.url, headers=auth(user), timeout=30) as other,
            open_stream(other, params={"since": cursor}) as stream,
        ):
            events = await events_for(stream, seconds=5)
            reminded = [event.item()["task"] for event in events]
            assert {event.event for event in events} == {"reminder"}
            assert {event.item()["op"] for event in events} == {"reminder"}
            expected = {task["id"] for task in [*overdue, soon]}
            assert sorted(task["id"] for task in reminded) == sorted(expected)
            # Delivering a reminder is not a change of the task.
            assert all(task["version"] == 1 for task in reminded)
            assert await change_count(database_url, user) == writes + len(expected)

            # A new remind_at arms it again, already past: it fires at once, once.
            again = await one.put(
                f"/api/tasks/{soon['id']}", json={"remind_at": stamp(now - timedelta(seconds=1))}
            )
            assert again.status_code == 200
            events = await events_for(stream, seconds=3)
            assert [(event.event, event.item()["op"]) for event in events] == [
                ("change", "upsert"),
                ("reminder", "reminder"),
            ]
            assert await change_count(database_url, user) == writes + len(expected) + 2
            # The feed carries each task's latest reminder once.
            feed = (await one.get("/api/tasks/changes", params={"since": cursor})).json()
            ops = [(item["op"], item["task"]["id"]) for item in feed["changes"]]
            assert sorted(ops) == sorted(
                [("reminder", task_id) for task_id in expected] + [("upsert", soon["id"])]
            )
