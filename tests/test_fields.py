"""The organizing fields of a task: priority, tags, due and reminder times, recurrence, time
zone, and the fields the service keeps (completed_at, version)."""

from __future__ import annotations

from datetime import datetime

import pytest
from httpx import AsyncClient

from tests.conftest import auth

FULL = {
    "title": "Weekly review",
    "description": "Inbox zero",
    "priority": "HiGh",
    "tags": [" Planning ", "home", "HOME", "planning"],
    "due_at": "2026-01-09T17:00:00+01:00",
    "remind_at": "2026-01-09t15:30:00.250z",
    "recurrence": "rrule:byday=fr;freq=weekly",
    "timezone": "Europe/Berlin",
}


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_create_stores_every_field_normalised(client: AsyncClient, user: str) -> None:
    response = await client.post("/api/tasks", json=FULL, headers=auth(user))
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["priority"] == "high"
    assert task["tags"] == ["home", "planning"]
    assert task["due_at"] == "2026-01-09T16:00:00Z"
    assert task["remind_at"] == "2026-01-09T15:30:00.250000Z"
    assert task["recurrence"] == "FREQ=WEEKLY;BYDAY=FR"
    assert task["timezone"] == "Europe/Berlin"
    assert task["completed"] is False
    assert task["completed_at"] is None
    assert task["version"] == 1
    fetched = await client.get(f"/api/tasks/{task['id']}", headers=auth(user))
    assert fetched.json() == task


async def test_defaults(client: AsyncClient, user: str, create_task) -> None:
    task = await create_task(user, "Plain")
    assert {key: task[key] for key in FULL if key not in ("title", "description")} == {
        "priority": "medium",
        "tags": [],
        "due_at": None,
        "remind_at": None,
        "recurrence": None,
        "timezone": "UTC",
    }
    assert task["version"] == 1
    assert task["completed_at"] is None


async def test_limits_are_inclusive(client: AsyncClient, user: str) -> None:
    tags = [f"t{n:02}" for n in range(20)]
    body = {"title": "x", "tags": [*tags, *(tag.upper() for tag in tags), "y" * 50][:40]}
    response = await client.post("/api/tasks", json=body, headers=auth(user))
    assert response.status_code == 201, response.text
    assert response.json()["tags"] == tags
    long_tag = await client.post(
        "/api/tasks", json={"title": "x", "tags": ["  " + "Y" * 50 + " "]}, headers=auth(user)
    )
    assert long_tag.json()["tags"] == ["y" * 50]
    rule = "FREQ=DAILY;INTERVAL=1000;BYMONTH=1" + ",1" * 233
    assert len(rule) == 500
    body = {"title": "x", "recurrence": rule, "due_at": "2026-01-01T09:00:00Z"}
    response = await client.post("/api/tasks", json=body, headers=auth(user))
    assert response.status_code == 201, response.text
    assert response.json()["recurrence"] == "FREQ=DAILY;INTERVAL=1000;BYMONTH=1"
    too_long = await client.post(
        "/api/tasks", json={**body, "recurrence": rule + "2"}, headers=auth(user)
    )
    assert too_long.status_code == 422


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"priority": "urgent"}, "priority"),
        ({"priority": None}, "priority"),
        ({"priority": 3}, "priority"),
        ({"priority": ""}, "priority"),
        ({"tags": None}, "tags"),
        ({"tags": "home"}, "tags"),
        ({"tags": [1]}, "tags"),
        ({"tags": [""]}, "tags"),
        ({"tags": ["   "]}, "tags"),
        ({"tags": ["a,b"]}, "tags"),
        ({"tags": ["tab\there"]}, "tags"),
        ({"tags": ["bell\u0007"]}, "tags"),
        ({"tags": ["nul\u0000"]}, "tags"),
        ({"tags": ["x" * 51]}, "tags"),
        ({"tags": [f"t{n}" for n in range(21)]}, "tags"),
        ({"due_at": "2026-01-09T16:00:00"}, "due_at"),
        ({"due_at": "2026-01-09"}, "due_at"),
        ({"due_at": "2026-01-09T16:00Z"}, "due_at"),
        ({"due_at": "tomorrow"}, "due_at"),
        ({"due_at": 1767974400}, "due_at"),
        ({"due_at": "2026-02-30T10:00:00Z"}, "due_at"),
        ({"due_at": "0001-01-01T00:00:00+01:00"}, "due_at"),
        ({"due_at": "9999-12-31T23:00:00-05:00"}, "due_at"),
        ({"remind_at": "2026-01-09 16:00"}, "remind_at"),
        ({"remind_at": True}, "remind_at"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timezone": None}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"timezone": 1}, "timezone"),
        ({"recurrence": "FREQ=HOURLY"}, "recurrence"),
        ({"recurrence": ""}, "recurrence"),
        ({"recurrence": 7}, "recurrence"),
        ({"recurrence": "FREQ=DAILY;BYHOUR=9"}, "recurrence"),
        ({"recurrence": "FREQ=DAILY;COUNT=3;UNTIL=20270101"}, "recurrence"),
        ({"recurrence": "FREQ=DAILY;INTERVAL=0"}, "recurrence"),
        ({"recurrence": "FREQ=DAILY;INTERVAL=1001"}, "recurrence"),
        ({"recurrence": "FREQ=DAILY;FREQ=WEEKLY"}, "recurrence"),
        ({"recurrence": "FREQ=WEEKLY;BYDAY=1MO"}, "recurrence"),
        ({"recurrence": "FREQ=WEEKLY;BYMONTHDAY=1"}, "recurrence"),
        ({"recurrence": "FREQ=MONTHLY;BYMONTHDAY=32"}, "recurrence"),
        ({"recurrence": "FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=30"}, "recurrence"),
        ({"recurrence": "FREQ=DAILY;UNTIL=2027"}, "recurrence"),
        ({"recurrence": "FREQ=DAILY;" + "BYMONTH=1;" * 60}, "recurrence"),
        ({"recurrence": "FREQ=DAILY;\u0000"}, "recurrence"),
        # Never occurs from its due date on: UNTIL before it, or weekdays the interval skips.
        ({"recurrence": "FREQ=DAILY;UNTIL=20251231T000000Z"}, "recurrence"),
        ({"recurrence": "FREQ=DAILY;INTERVAL=7;BYDAY=TU"}, "recurrence"),
        # Too rare to expand cheaply: a Monday February 29th, day by day.
        ({"recurrence": "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO"}, "recurrence"),
    ],
)
async def test_invalid_values_are_422_naming_the_field(
    client: AsyncClient, user: str, create_task, fields: dict[str, object], field: str
) -> None:
    body = {"title": "x", "due_at": "2026-01-05T09:00:00Z", **fields}
    response = await client.post("/api/tasks", json=body, headers=auth(user))
    assert response.status_code == 422, response.text
    assert [problem["loc"][:2] for problem in response.json()["detail"]] == [["body", field]]

    task = await create_task(user, due_at="2026-01-05T09:00:00Z")
    response = await client.put(f"/api/tasks/{task['id']}", json=fields, headers=auth(user))
    assert response.status_code == 422, response.text
    assert [problem["loc"][:2] for problem in response.json()["detail"]] == [["body", field]]
    assert (await client.get(f"/api/tasks/{task['id']}", headers=auth(user))).json() == task


async def test_a_recurring_task_needs_a_due_date(
    client: AsyncClient, user: str, create_task
) -> None:
    body = {"title": "x", "recurrence": "FREQ=DAILY"}
    response = await client.post("/api/tasks", json=body, headers=auth(user))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "recurrence"]

    plain = await create_task(user)
    response = await client.put(
        f"/api/tasks/{plain['id']}", json={"recurrence": "FREQ=DAILY"}, headers=auth(user)
    )
    assert response.json()["detail"][0]["loc"] == ["body", "recurrence"]

    recurring = await create_task(user, **body, due_at="2026-01-05T09:00:00Z")
    path = f"/api/tasks/{recurring['id']}"
    response = await client.put(path, json={"due_at": None}, headers=auth(user))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "due_at"]
    cleared = await client.put(path, json={"due_at": None, "recurrence": None}, headers=auth(user))
    assert cleared.status_code == 200
    assert (cleared.json()["due_at"], cleared.json()["recurrence"]) == (None, None)


async def test_update_sets_and_clears_each_field(
    client: AsyncClient, user: str, create_task
) -> None:
    task = await create_task(user, "Original", description="old")
    path = f"/api/tasks/{task['id']}"
    response = await client.put(path, json={**FULL, "title": "Changed"}, headers=auth(user))
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["title"] == "Changed"
    assert changed["priority"] == "high"
    assert changed["tags"] == ["home", "planning"]
    assert changed["due_at"] == "2026-01-09T16:00:00Z"
    assert changed["recurrence"] == "FREQ=WEEKLY;BYDAY=FR"
    assert changed["timezone"] == "Europe/Berlin"
    assert changed["version"] == 2

    nulls = {"description": None, "due_at": None, "remind_at": None, "recurrence": None}
    response = await client.put(path, json={**nulls, "tags": []}, headers=auth(user))
    cleared = response.json()
    assert {key: cleared[key] for key in nulls} == nulls
    assert cleared["tags"] == []
    assert cleared["priority"] == "high"  # left out: kept
    assert cleared["version"] == 3
    assert (await client.get(path, headers=auth(user))).json() == cleared


async def test_version_and_completed_at_follow_every_change(
    client: AsyncClient, user: str, create_task
) -> None:
    task = await create_task(user)
    path = f"/api/tasks/{task['id']}"
    toggled = (await client.patch(f"{path}/complete", headers=auth(user))).json()
    assert toggled["completed"] is True
    assert toggled["version"] == 2
    completed_at = moment(toggled["completed_at"])
    assert completed_at == moment(toggled["updated_at"])
    assert completed_at >= moment(task["created_at"])

    again = (
        await client.patch(f"{path}/complete", json={"completed": True}, headers=auth(user))
    ).json()
    assert again["version"] == 3
    assert again["completed_at"] == toggled["completed_at"]  # still the time it became true

    reopened = (await client.put(path, json={"completed": False}, headers=auth(user))).json()
    assert reopened["completed_at"] is None
    assert reopened["version"] == 4
    done = (await client.put(path, json={"completed": True}, headers=auth(user))).json()
    assert moment(done["completed_at"]) > completed_at
    renamed = (await client.put(path, json={"title": "new"}, headers=auth(user))).json()
    assert renamed["version"] == 6
    assert moment(renamed["updated_at"]) > moment(done["updated_at"])
    assert renamed["completed_at"] == done["completed_at"]
    unchanged = (await client.put(path, json={}, headers=auth(user))).json()
    assert unchanged == renamed


async def test_server_owned_fields_are_ignored(client: AsyncClient, user: str) -> None:
    owned = {"completed_at": "2000-01-01T00:00:00Z", "version": 99}
    created = await client.post("/api/tasks", json={"title": "x", **owned}, headers=auth(user))
    assert created.status_code == 201
    assert (created.json()["completed_at"], created.json()["version"]) == (None, 1)
    path = f"/api/tasks/{created.json()['id']}"
    updated = await client.put(path, json={"title": "y", **owned}, headers=auth(user))
    assert (updated.json()["completed_at"], updated.json()["version"]) == (None, 2)


async def test_openapi_documents_every_field_with_an_example(client: AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    for name in ("TaskCreate", "TaskRead"):
        for field, schema in schemas[name]["properties"].items():
            # On the field, or on its non-null alternative.
            alternatives = [schema, *schema.get("anyOf", [])]
            assert any("examples" in option for option in alternatives), (name, field)
