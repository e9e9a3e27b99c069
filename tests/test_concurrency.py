"""No lost writes: concurrent creates all persist; toggles serialise; a delete is final."""

from __future__ import annotations

import asyncio

from httpx import AsyncClient

from tests.conftest import auth


async def test_concurrent_creates_all_persist(client: AsyncClient, user: str) -> None:
    responses = await asyncio.gather(
        *(
            client.post("/api/tasks", json={"title": f"task {n}"}, headers=auth(user))
            for n in range(60)
        )
    )
    assert [response.status_code for response in responses] == [201] * 60
    ids = {response.json()["id"] for response in responses}
    assert len(ids) == 60
    listed = await client.get("/api/tasks", params={"limit": 1000}, headers=auth(user))
    assert {task["id"] for task in listed.json()} == ids
    assert listed.headers["x-total-count"] == "60"


async def test_an_even_number_of_concurrent_toggles_leaves_the_task_as_it_was(
    client: AsyncClient, user: str, create_task
) -> None:
    task = await create_task(user)
    path = f"/api/tasks/{task['id']}/complete"
    responses = await asyncio.gather(*(client.patch(path, headers=auth(user)) for _ in range(40)))
    assert {response.status_code for response in responses} == {200}
    # Each toggle saw the one before it: exactly half of them answered "completed".
    assert sum(response.json()["completed"] for response in responses) == 20
    final = await client.get(f"/api/tasks/{task['id']}", headers=auth(user))
    assert final.json()["completed"] is False


async def test_an_odd_number_of_concurrent_toggles_flips_it(
    client: AsyncClient, user: str, create_task
) -> None:
    task = await create_task(user)
    path = f"/api/tasks/{task['id']}/complete"
    await asyncio.gather(*(client.patch(path, headers=auth(user)) for _ in range(21)))
    final = await client.get(f"/api/tasks/{task['id']}", headers=auth(user))
    assert final.json()["completed"] is True
    # The completed total followed every one of the racing toggles.
    for status, total in (("completed", "1"), ("pending", "0"), ("all", "1")):
        listed = await client.get("/api/tasks", params={"status": status}, headers=auth(user))
        assert listed.headers["x-total-count"] == total, status


async def test_update_racing_delete_never_resurrects_or_fails(
    client: AsyncClient, user: str, create_task
) -> None:
    for _ in range(10):
        task = await create_task(user)
        path = f"/api/tasks/{task['id']}"
        results = await asyncio.gather(
            client.put(path, json={"title": "edited"}, headers=auth(user)),
            client.patch(f"{path}/complete", headers=auth(user)),
            client.delete(path, headers=auth(user)),
            client.put(path, json={"completed": True}, headers=auth(user)),
        )
        statuses = [response.status_code for response in results]
        assert statuses[2] == 204
        assert set(statuses[:2] + statuses[3:]) <= {200, 404}
        assert (await client.get(path, headers=auth(user))).status_code == 404
    assert (await client.get("/api/tasks", headers=auth(user))).json() == []


async def test_concurrent_mixed_traffic_from_many_users(client: AsyncClient, create_task) -> None:
    users = [f"mixed-{n}-{id(client)}" for n in range(8)]
    tasks = {user: await create_task(user) for user in users}

    async def session(user: str) -> None:
        task_path = f"/api/tasks/{tasks[user]['id']}"
        for _ in range(5):
            created = await client.post("/api/tasks", json={"title": "more"}, headers=auth(user))
            assert created.status_code == 201
            assert (
                await client.patch(f"{task_path}/complete", headers=auth(user))
            ).status_code == 200
            assert (await client.get("/api/tasks", headers=auth(user))).status_code == 200

    await asyncio.gather(*(session(user) for user in users))
    for user in users:
        response = await client.get("/api/tasks", headers=auth(user))
        assert response.headers["x-total-count"] == "6"
        original = next(task for task in response.json() if task["id"] == tasks[user]["id"])
        assert original["completed"] is True  # five toggles
