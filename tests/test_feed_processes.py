"""The feed's promise with two real server processes writing at once: a reader paging through
the feed while they write ends up with exactly the final state, every time."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import SECRET, auth, new_user
from tests.server import Server, running_server, service_environment
from tests.test_feed import Copy, apply


@pytest.fixture(scope="module")
def two_servers(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    env = service_environment(DATABASE_URL=database_url, BETTER_AUTH_SECRET=SECRET, WORKERS="1")
    folder = tmp_path_factory.mktemp("two-servers")
    with running_server(folder, env) as first, running_server(folder, env) as second:
        yield first, second


async def write_randomly(clients: list[httpx.AsyncClient], user: str, seed: int) -> None:
    chooser = random.Random(seed)
    mine: list[int] = []
    for step in range(40):
        client = chooser.choice(clients)
        action = chooser.choice(["create", "create", "update", "toggle", "delete"])
        if action == "create" or not mine:
            response = await client.post("/api/tasks", json={"title": f"w{seed} s{step}"})
            assert response.status_code == 201, response.text
            mine.append(response.json()["id"])
            continue
        task_id = chooser.choice(mine)
        if action == "update":
            response = await client.put(f"/api/tasks/{task_id}", json={"title": f"u{step}"})
        elif action == "toggle":
            response = await client.patch(f"/api/tasks/{task_id}/complete")
        else:
            response = await client.delete(f"/api/tasks/{task_id}")
            mine.remove(task_id)
        assert response.status_code in (200, 204), response.text


async def read_until(
    clients: list[httpx.AsyncClient], copy: Copy, done: asyncio.Event
) -> list[dict[str, Any]]:
    """Page through the feed (small pages, either server) until the writers are done and
    nothing more waits; every item read, in order."""
    items: list[dict[str, Any]] = []
    since: str | None = None
    turn = 0
    while True:
        finished = done.is_set()
        params: dict[str, Any] = {"limit": 5} | ({} if since is None else {"since": since})
        turn += 1
        response = await clients[turn % 2].get("/api/tasks/changes", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        for item in page["changes"]:
            apply(copy, item)
        items += page["changes"]
        since = page["cursor"]
        if finished and not page["has_more"]:
            return items
        if not page["changes"]:
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("round_", range(3))
async def test_a_reader_paging_during_concurrent_writes_ends_with_the_final_state(
    two_servers: tuple[Server, Server], round_: int
) -> None:
    user, neighbour = new_user(), new_user()
    sessions = [
        httpx.AsyncClient(base_url=server.url, headers=auth(who), timeout=30)
        for who in (user, neighbour)
        for server in two_servers
    ]
    mine, theirs = sessions[:2], sessions[2:]
    try:
        copy: Copy = {}
        done = asyncio.Event()
        reader = asyncio.create_task(read_until(mine, copy, done))
        await asyncio.gather(
            *(write_randomly(mine, user, seed=round_ * 100 + n) for n in range(6)),
            write_randomly(theirs, neighbour, seed=round_ * 100 + 99),
        )
        done.set()
        items = await reader
        final = await mine[0].get("/api/tasks", params={"limit": 1000})
        assert copy == {task["id"]: task for task in final.json()}
        assert all(item["op"] in ("upsert", "delete") for item in items)
        # Each task's upserts arrive in the order of its changes, never one seen before: its
        # versions only go up. (A task is its id and creation time: SQLite may give a new task
        # the id of the newest one deleted.)
        seen: dict[tuple[int, str], list[int]] = {}
        for item in items:
            if item["op"] == "upsert":
                task = item["task"]
                seen.setdefault((task["id"], task["created_at"]), []).append(task["version"])
        for versions in seen.values():
            assert versions == sorted(set(versions))
    finally:
        for session in sessions:
            await session.aclose()
