"""Recurring tasks: completing one creates its next occurrence, once, in the task's time zone."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from httpx import AsyncClient, Response

from tests.conftest import auth

WEEKLY_REVIEW = {
    "title": "Weekly review",
    "description": "Plan the week",
    "priority": "high",
    "tags": ["work", "planning"],
    "recurrence": "FREQ=WEEKLY;BYDAY=MO",
    "timezone": "Europe/Berlin",
}


def next_link(response: Response) -> str | None:
    found = re.fullmatch(r'<([^>]+)>; rel="next-occurrence"', response.headers.get("link", ""))
    return found.group(1) if found else None


async def all_tasks(client: AsyncClient, user: str) -> list[dict[str, Any]]:
    response = await client.get("/api/tasks", params={"limit": 1000}, headers=auth(user))
    tasks: list[dict[str, Any]] = response.json()
    return sorted(tasks, key=lambda task: task["id"])


async def complete(client: AsyncClient, user: str, task: dict[str, Any]) -> Response:
    response = await client.patch(
        f"/api/tasks/{task['id']}/complete", json={"completed": True}, headers=auth(user)
    )
    assert response.status_code == 200, response.text
    return response


async def follow(client: AsyncClient, user: str, response: Response) -> dict[str, Any]:
    link = next_link(response)
    assert link is not None, response.headers
    fetched = await client.get(link, headers=auth(user))
    assert fetched.status_code == 200
    task: dict[str, Any] = fetched.json()
    return task


@pytest.mark.parametrize(
    ("due_at", "next_due_at"),
    [
        # Monday 09:00 in Berlin, before and after the change to summer time (29 March 2026)
        ("2026-03-23T08:00:00Z", "2026-03-30T07:00:00Z"),
        # and back to winter time (25 October 2026): still 09:00 local.
        ("2026-10-19T07:00:00Z", "2026-10-26T08:00:00Z"),
    ],
)
async def test_weekly_task_stays_at_local_time_across_daylight_saving(
    client: AsyncClient, user: str, create_task, tasks_path, due_at: str, next_due_at: str
) -> None:
    task = await create_task(user, **WEEKLY_REVIEW, due_at=due_at)
    response = await client.patch(f"/api/tasks/{task['id']}/complete", headers=auth(user))
    assert response.json()["completed"] is True
    following = await follow(client, user, response)
    # Under the prefix the request was made to.
    assert next_link(response) == f"{tasks_path(user)}/{following['id']}"
    assert following["due_at"] == next_due_at
    for field in ("title", "description", "priority", "tags", "recurrence", "timezone"):
        assert following[field] == task[field], field
    assert following["completed"] is False
    assert (following["completed_at"], following["version"]) == (None, 1)


async def test_reminder_keeps_its_distance_before_the_due_time(
    client: AsyncClient, user: str, create_task
) -> None:
    task = await create_task(
        user,
        **WEEKLY_REVIEW,
        due_at="2026-03-23T08:00:00Z",
        remind_at="2026-03-22T20:30:00Z",
    )
    following = await follow(client, user, await complete(client, user, task))
    assert following["due_at"] == "2026-03-30T07:00:00Z"
    assert following["remind_at"] == "2026-03-29T19:30:00Z"  # 11.5 hours before, as before
    without = await create_task(user, recurrence="FREQ=DAILY", due_at="2026-03-23T08:00:00Z")
    assert (await follow(client, user, await complete(client, user, without)))["remind_at"] is None


async def test_monthly_on_the_31st_skips_shorter_months(
    client: AsyncClient, user: str, create_task
) -> None:
    task = await create_task(
        user, recurrence="FREQ=MONTHLY", due_at="2026-01-31T17:00:00Z", timezone="UTC"
    )
    dues = []
    for _ in range(3):
        task = await follow(client, user, await complete(client, user, task))
        dues.append(task["due_at"])
    assert dues == ["2026-03-31T17:00:00Z", "2026-05-31T17:00:00Z", "2026-07-31T17:00:00Z"]


async def test_count_ends_the_series(client: AsyncClient, user: str, create_task) -> None:
    task = await create_task(user, recurrence="FREQ=DAILY;COUNT=3", due_at="2026-05-01T06:00:00Z")
    second = await follow(client, user, await complete(client, user, task))
    third = await follow(client, user, await complete(client, user, second))
    assert third["due_at"] == "2026-05-03T06:00:00Z"
    last = await complete(client, user, third)
    assert next_link(last) is None
    assert len(await all_tasks(client, user)) == 3


async def test_until_ends_the_series(client: AsyncClient, user: str, create_task) -> None:
    task = await create_task(
        user,
        recurrence="FREQ=WEEKLY;UNTIL=20260515T000000Z",
        due_at="2026-05-01T10:00:00+02:00",
        timezone="Europe/Berlin",
    )
    second = await follow(client, user, await complete(client, user, task))
    assert second["due_at"] == "2026-05-08T08:00:00Z"
    assert next_link(await complete(client, user, second)) is None
    assert len(await all_tasks(client, user)) == 2


async def test_every_way_of_completing_creates_the_next_occurrence(
    client: AsyncClient, user: str, create_task
) -> None:
    ways = [
        ("PATCH", "/complete", None),
        ("PATCH", "/complete", {"completed": True}),
        ("PUT", "", {"completed": True}),
        ("PUT", "", {"completed": True, "title": "Renamed while completing"}),
    ]
    for method, suffix, body in ways:
        task = await create_task(user, recurrence="FREQ=DAILY", due_at="2026-06-01T09:00:00Z")
        response = await client.request(
            method, f"/api/tasks/{task['id']}{suffix}", json=body, headers=auth(user)
        )
        assert response.status_code == 200, response.text
        following = await follow(client, user, response)
        assert following["due_at"] == "2026-06-02T09:00:00Z"
        assert following["title"] == response.json()["title"]


async def test_a_task_gets_at_most_one_next_occurrence(
    client: AsyncClient, user: str, create_task
) -> None:
    task = await create_task(user, recurrence="FREQ=DAILY", due_at="2026-06-01T09:00:00Z")
    path = f"/api/tasks/{task['id']}/complete"
    first = await client.patch(path, headers=auth(user))
    following = await follow(client, user, first)
    reopened = await client.patch(path, headers=auth(user))
    assert reopened.json()["completed"] is False
    assert next_link(reopened) is None
    # Reopening keeps the next occurrence; completing again does not make a second one.
    assert (
        await client.get(f"/api/tasks/{following['id']}", headers=auth(user))
    ).status_code == 200
    again = await client.patch(path, headers=auth(user))
    assert again.json()["completed"] is True
    assert next_link(again) is None
    assert [t["id"] for t in await all_tasks(client, user)] == [task["id"], following["id"]]


async def test_completing_a_task_that_is_not_recurring_names_nothing(
    client: AsyncClient, user: str, create_task
) -> None:
    task = await create_task(user, due_at="2026-06-01T09:00:00Z")
    response = await client.patch(f"/api/tasks/{task['id']}/complete", headers=auth(user))
    assert "link" not in response.headers
    assert len(await all_tasks(client, user)) == 1


async def test_racing_completions_create_one_next_occurrence(
    client: AsyncClient, user: str, create_task
) -> None:
    """Ten clients complete the same recurring task at once: exactly one next occurrence."""
    task = await create_task(user, recurrence="FREQ=DAILY", due_at="2026-06-01T09:00:00Z")
    responses = await asyncio.gather(*(complete(client, user, task) for _ in range(10)))
    links = [next_link(response) for response in responses]
    assert len([link for link in links if link]) == 1
    tasks = await all_tasks(client, user)
    assert len(tasks) == 2
    assert tasks[1]["due_at"] == "2026-06-02T09:00:00Z"


async def test_changing_the_rule_starts_a_new_series(
    client: AsyncClient, user: str, create_task
) -> None:
    task = await create_task(user, recurrence="FREQ=DAILY;COUNT=2", due_at="2026-06-01T09:00:00Z")
    second = await follow(client, user, await complete(client, user, task))
    changed = await client.put(
        f"/api/tasks/{second['id']}",
        json={"recurrence": "FREQ=WEEKLY;COUNT=2"},
        headers=auth(user),
    )
    assert changed.status_code == 200
    third = await follow(client, user, await complete(client, user, second))
    assert third["due_at"] == "2026-06-09T09:00:00Z"
    assert next_link(await complete(client, user, third)) is None
