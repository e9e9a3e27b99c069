"""Isolation: another user's task is, on every endpoint and filter, a task that does not exist."""

from __future__ import annotations

import asyncio

import pytest
from httpx import AsyncClient

from tests.conftest import auth, new_user


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PUT", "", {"title": "hijacked"}),
        ("PUT", "", {}),
        ("PATCH", "/complete", None),
        ("PATCH", "/complete", {"completed": True}),
        ("DELETE", "", None),
    ],
)
async def test_another_users_task_looks_missing(
    client: AsyncClient, create_task, method: str, suffix: str, body: object
) -> None:
    owner, intruder = new_user(), new_user()
    task = await create_task(owner, "Private", description="secret")
    path = f"/api/tasks/{task['id']}{suffix}"

    foreign = await client.request(method, path, json=body, headers=auth(intruder))
    missing = await client.request(
        method, f"/api/tasks/999999999{suffix}", json=body, headers=auth(intruder)
    )
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json() == {"detail": "Task not found"}
    assert (await client.get(f"/api/tasks/{task['id']}", headers=auth(owner))).json() == task


async def test_lists_and_counts_hold_only_the_callers_tasks(
    client: AsyncClient, create_task
) -> None:
    alice, bob = new_user(), new_user()
    for number in range(3):
        await create_task(alice, f"alice {number}")
    bob_task = await create_task(bob, "bob")
    await client.patch(f"/api/tasks/{bob_task['id']}/complete", headers=auth(bob))

    for status in ("all", "pending", "completed"):
        response = await client.get("/api/tasks", params={"status": status}, headers=auth(alice))
        assert all(task["user_id"] == alice for task in response.json())
        expected = {"all": 3, "pending": 3, "completed": 0}[status]
        assert response.headers["x-total-count"] == str(expected)
        assert len(response.json()) == expected


async def test_isolation_holds_under_concurrency(client: AsyncClient) -> None:
    users = [new_user() for _ in range(6)]

    async def work(user: str) -> None:
        for number in range(5):
            response = await client.post(
                "/api/tasks", json={"title": f"{user} {number}"}, headers=auth(user)
            )
            assert response.status_code == 201

    await asyncio.gather(*(work(user) for user in users))
    lists = await asyncio.gather(*(client.get("/api/tasks", headers=auth(user)) for user in users))
    for user, response in zip(users, lists, strict=True):
        titles = {task["title"] for task in response.json()}
        assert titles == {f"{user} {number}" for number in range(5)}
        assert response.headers["x-total-count"] == "5"
