"""The task resource: create, read, update, complete and delete, with the contract's rules."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.conftest import auth, client_for, make_settings, new_user
from todo_api.http.app import create_app

TASK_FIELDS = {
    *("id", "user_id", "title", "description", "completed", "completed_at", "priority", "tags"),
    *("due_at", "remind_at", "recurrence", "timezone", "version", "created_at", "updated_at"),
}


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"{value} has no UTC offset"
    assert parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    return parsed


async def test_create_returns_the_stored_task_with_location(
    client: AsyncClient, user: str, tasks_path: Callable[[str], str]
) -> None:
    before = datetime.now(UTC)
    response = await client.post(
        "/api/tasks",
        json={"title": "Buy groceries", "description": "Milk, bread, eggs"},
        headers=auth(user),
    )
    assert response.status_code == 201
    task = response.json()
    assert set(task) == TASK_FIELDS
    assert task["title"] == "Buy groceries"
    assert task["description"] == "Milk, bread, eggs"
    assert task["completed"] is False
    assert task["user_id"] == user
    assert isinstance(task["id"], int)
    assert response.headers["location"] == f"{tasks_path(user)}/{task['id']}"
    created = parse_time(task["created_at"])
    assert before.replace(microsecond=0) <= created <= datetime.now(UTC)
    assert task["created_at"] == task["updated_at"]

    fetched = await client.get(response.headers["location"], headers=auth(user))
    assert fetched.status_code == 200
    assert fetched.json() == task


async def test_title_is_trimmed_and_description_defaults_to_null(
    client: AsyncClient, user: str
) -> None:
    response = await client.post(
        "/api/tasks", json={"title": "  Walk the dog \n"}, headers=auth(user)
    )
    assert response.status_code == 201
    assert response.json()["title"] == "Walk the dog"
    assert response.json()["description"] is None


async def test_server_owned_fields_in_a_body_never_take_effect(
    client: AsyncClient, user: str, create_task
) -> None:
    other = await create_task("someone-else")
    response = await client.post(
        "/api/tasks",
        json={
            "title": "Mine",
            "id": other["id"],
            "user_id": "someone-else",
            "created_at": "2000-01-01T00:00:00Z",
            "updated_at": "2000-01-01T00:00:00Z",
            "completed": True,
        },
        headers=auth(user),
    )
    assert response.status_code == 201
    task = response.json()
    assert task["id"] != other["id"]
    assert task["user_id"] == user
    assert task["completed"] is False
    assert not task["created_at"].startswith("2000")

    update = await client.put(
        f"/api/tasks/{task['id']}",
        json={**task, "title": "Renamed", "user_id": "someone-else", "id": 1, "created_at": "x"},
        headers=auth(user),
    )
    assert update.status_code == 200
    assert update.json()["user_id"] == user
    assert update.json()["id"] == task["id"]
    assert update.json()["created_at"] == task["created_at"]
    assert (
        await client.get(f"/api/tasks/{other['id']}", headers=auth("someone-else"))
    ).json() == other


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": None}, "title"),
        ({"title": 5}, "title"),
        ({"title": ["a"]}, "title"),
        ({"title": "ok", "description": "d" * 2001}, "description"),
        ({"title": "ok", "description": 7}, "description"),
        ({"title": "ok", "description": {"a": 1}}, "description"),
        ({"title": "ok", "colour": "red"}, "colour"),
        # PostgreSQL cannot store U+0000: refused on every database, never a 500.
        ({"title": "a\u0000b"}, "title"),
        ({"title": "ok", "description": "\u0000"}, "description"),
    ],
)
async def test_create_rejects_invalid_fields(
    client: AsyncClient, user: str, body: dict[str, object], field: str
) -> None:
    response = await client.post("/api/tasks", json=body, headers=auth(user))
    assert response.status_code == 422, response.text
    locations = [error["loc"] for error in response.json()["detail"]]
    assert any(field in loc for loc in locations), locations
    assert (await client.get("/api/tasks", headers=auth(user))).json() == []


@pytest.mark.parametrize("body", [b"[]", b'"title"', b"42", b"null", b'[{"title": "x"}]', b""])
async def test_a_body_that_is_not_an_object_is_422(
    client: AsyncClient, user: str, body: bytes
) -> None:
    headers = auth(user) | {"Content-Type": "application/json"}
    response = await client.post("/api/tasks", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list)


async def test_title_limits_are_inclusive(client: AsyncClient, user: str) -> None:
    for title in ("x", "x" * 200, " " + "y" * 200 + " "):
        response = await client.post("/api/tasks", json={"title": title}, headers=auth(user))
        assert response.status_code == 201, title
    response = await client.post(
        "/api/tasks", json={"title": "ok", "description": "d" * 2000}, headers=auth(user)
    )
    assert response.status_code == 201


async def test_unicode_round_trips(client: AsyncClient, user: str) -> None:
    title = "Café ☕ — 日本語 🚀" + "é" * 180
    response = await client.post(
        "/api/tasks", json={"title": title, "description": "emoji 🎉\nnew line"}, headers=auth(user)
    )
    assert response.status_code == 201
    fetched = (await client.get(f"/api/tasks/{response.json()['id']}", headers=auth(user))).json()
    assert fetched["title"] == title
    assert fetched["description"] == "emoji 🎉\nnew line"


async def test_update_changes_only_the_fields_sent(
    client: AsyncClient, user: str, create_task
) -> None:
    task = await create_task(user, "Original", description="Keep me")
    response = await client.put(
        f"/api/tasks/{task['id']}", json={"title": " Renamed "}, headers=auth(user)
    )
    assert response.status_code == 200
    updated = response.json()
    assert updated["title"] == "Renamed"
    assert updated["description"] == "Keep me"
    assert updated["completed"] is False
    assert updated["created_at"] == task["created_at"]
    assert parse_time(updated["updated_at"]) > parse_time(task["updated_at"])

    response = await client.put(
        f"/api/tasks/{task['id']}", json={"completed": True}, headers=auth(user)
    )
    assert response.json()["completed"] is True
    assert response.json()["title"] == "Renamed"


async def test_update_with_null_description_clears_it(
    client: AsyncClient, user: str, create_task
) -> None:
    task = await create_task(user, description="To be cleared")
    response = await client.put(
        f"/api/tasks/{task['id']}", json={"description": None}, headers=auth(user)
    )
    assert response.status_code == 200
    assert response.json()["description"] is None
    fetched = await client.get(f"/api/tasks/{task['id']}", headers=auth(user))
    assert fetched.json()["description"] is None


async def test_empty_update_changes_nothing(client: AsyncClient, user: str, create_task) -> None:
    task = await create_task(user)
    response = await client.put(f"/api/tasks/{task['id']}", json={}, headers=auth(user))
    assert response.status_code == 200
    assert response.json() == task


@pytest.mark.parametrize(
    "body",
    [
        {"title": None},
        {"title": ""},
        {"title": "   "},
        {"title": "x" * 201},
        {"completed": "true"},
        {"completed": 1},
        {"completed": "yes"},
        {"completed": None},
        {"description": "d" * 2001},
        {"done": True},
        {"title": "nul\u0000"},
        {"description": "nul\u0000"},
    ],
)
async def test_update_rejects_invalid_fields_and_keeps_the_task(
    client: AsyncClient, user: str, create_task, body: dict[str, object]
) -> None:
    task = await create_task(user, description="Unchanged")
    response = await client.put(f"/api/tasks/{task['id']}", json=body, headers=auth(user))
    assert response.status_code == 422, response.text
    assert (await client.get(f"/api/tasks/{task['id']}", headers=auth(user))).json() == task


async def test_toggle_flips_completion_each_time(
    client: AsyncClient, user: str, create_task
) -> None:
    task = await create_task(user)
    first = await client.patch(f"/api/tasks/{task['id']}/complete", headers=auth(user))
    assert first.status_code == 200
    assert first.json()["completed"] is True
    assert parse_time(first.json()["updated_at"]) > parse_time(task["updated_at"])
    second = await client.patch(f"/api/tasks/{task['id']}/complete", headers=auth(user))
    assert second.json()["completed"] is False
    assert second.json()["created_at"] == task["created_at"]


@pytest.mark.parametrize("value", [True, False])
async def test_complete_with_a_body_sets_the_value(
    client: AsyncClient, user: str, create_task, value: bool
) -> None:
    task = await create_task(user)
    for _ in range(2):  # setting is idempotent, unlike toggling
        response = await client.patch(
            f"/api/tasks/{task['id']}/complete", json={"completed": value}, headers=auth(user)
        )
        assert response.status_code == 200
        assert response.json()["completed"] is value


async def test_complete_with_an_empty_object_toggles(
    client: AsyncClient, user: str, create_task
) -> None:
    task = await create_task(user)
    response = await client.patch(f"/api/tasks/{task['id']}/complete", json={}, headers=auth(user))
    assert response.json()["completed"] is True


@pytest.mark.parametrize("body", [{"completed": "true"}, {"completed": 1}, {"completed": None}])
async def test_complete_rejects_non_boolean(
    client: AsyncClient, user: str, create_task, body: dict[str, object]
) -> None:
    task = await create_task(user)
    response = await client.patch(
        f"/api/tasks/{task['id']}/complete", json=body, headers=auth(user)
    )
    assert response.status_code == 422
    assert (await client.get(f"/api/tasks/{task['id']}", headers=auth(user))).json() == task


async def test_delete_removes_the_task(client: AsyncClient, user: str, create_task) -> None:
    task = await create_task(user)
    response = await client.delete(f"/api/tasks/{task['id']}", headers=auth(user))
    assert response.status_code == 204
    assert response.content == b""
    path = f"/api/tasks/{task['id']}"
    assert (await client.get(path, headers=auth(user))).status_code == 404
    assert (await client.delete(path, headers=auth(user))).status_code == 404
    assert (await client.put(path, json={"title": "back"}, headers=auth(user))).status_code == 404
    assert (await client.patch(f"{path}/complete", headers=auth(user))).status_code == 404


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_missing_task_is_404(client: AsyncClient, user: str, method: str) -> None:
    response = await client.request(
        method, "/api/tasks/999999999", json={"title": "x"}, headers=auth(user)
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "Task not found"}


@pytest.mark.parametrize(
    "task_id", ["abc", "1.5", "0", "-1", "9223372036854775808", "99999999999999999999999", "1e3"]
)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_a_task_id_that_is_not_a_valid_id_is_422(
    client: AsyncClient, user: str, task_id: str, method: str
) -> None:
    path = f"/api/tasks/{task_id}" + ("/complete" if method == "PATCH" else "")
    response = await client.request(method, path, json={"title": "x"}, headers=auth(user))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["path", "task_id"]


async def test_largest_valid_id_is_a_plain_404(client: AsyncClient, user: str) -> None:
    response = await client.get("/api/tasks/9223372036854775807", headers=auth(user))
    assert response.status_code == 404


def test_an_app_built_before_its_event_loop_serves_in_it(app: FastAPI, database_url: str) -> None:
    """uvicorn builds the app first and runs it in a loop of its own afterwards: nothing the app
    holds (the database pool above all) may belong to whatever loop was current before."""
    application = create_app(make_settings(database_url))  # `app` has migrated the database
    user = new_user()

    async def create_and_read() -> tuple[int, int]:
        async with client_for(application) as client:
            created = await client.post("/api/tasks", json={"title": "x"}, headers=auth(user))
            read = await client.get(f"/api/tasks/{created.json()['id']}", headers=auth(user))
        await application.state.services.aclose()
        return created.status_code, read.status_code

    assert asyncio.run(create_and_read()) == (201, 200)
