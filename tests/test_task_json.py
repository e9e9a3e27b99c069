"""Task responses are serialized by the handlers (http/task_responses.py), not by FastAPI from the
response model: the bytes must be exactly what the model itself would write for the same task,
on every endpoint that answers with tasks, for every kind of value a task can hold."""

from __future__ import annotations

import json
from typing import Any

from httpx import AsyncClient, Response
from pydantic import TypeAdapter

from tests.conftest import auth
from todo_api.tasks.rows import task_from_row
from todo_api.tasks.schemas import TaskRead

ONE = TypeAdapter(TaskRead)
PAGE = TypeAdapter(list[TaskRead])

VARIED = [
    {"title": "Plain"},
    {
        "title": "Wöchentliche Überprüfung — 週次レビュー 🗓️",
        "description": 'Quotes " and \\ backslashes, tabs\tand\nnew lines; \u2028 too',
        "priority": "HIGH",
        "tags": ["Zuhause", "work"],
        "due_at": "2026-03-29T09:00:00.123456+02:00",
        "remind_at": "2026-03-29T06:30:00Z",
        "recurrence": "FREQ=WEEKLY;BYDAY=SU",
        "timezone": "Europe/Berlin",
    },
    {"title": "Low, due", "priority": "low", "due_at": "2027-01-01T00:00:00Z", "tags": ["x"]},
]


def assert_model_bytes(response: Response, adapter: TypeAdapter[Any]) -> None:
    assert response.status_code in (200, 201), response.text
    assert response.headers["content-type"] == "application/json"
    assert response.content == adapter.dump_json(adapter.validate_json(response.content))
    # Every time stamp is UTC, written with Z, whichever database stored it.
    for task in json.loads(response.content) if adapter is PAGE else [response.json()]:
        for name in ("created_at", "updated_at", "due_at", "remind_at", "completed_at"):
            assert task[name] is None or task[name].endswith("Z"), (name, task[name])


async def test_every_task_response_is_the_models_serialization(
    client: AsyncClient, user: str
) -> None:
    headers = auth(user)
    created = []
    for body in VARIED:
        response = await client.post("/api/tasks", json=body, headers=headers)
        assert_model_bytes(response, ONE)
        created.append(response.json())
    for task in created:
        path = f"/api/tasks/{task['id']}"
        assert_model_bytes(await client.get(path, headers=headers), ONE)
        completed = await client.patch(f"{path}/complete", headers=headers)
        assert_model_bytes(completed, ONE)
        assert completed.json()["completed_at"] is not None
        renamed = await client.put(path, json={"title": task["title"] + "!"}, headers=headers)
        assert_model_bytes(renamed, ONE)
    for query in ("", "?sort=title", "?q=überprüfung", "?tag=work&priority=high", "?limit=1"):
        listed = await client.get("/api/tasks" + query, headers=headers)
        assert_model_bytes(listed, PAGE)
        assert listed.json()
    # With tags and without (on PostgreSQL, the latter is stored by the create's own statement).
    untagged = {name: value for name, value in VARIED[1].items() if name != "tags"}
    for number, body in enumerate((VARIED[1], untagged)):
        keyed = {**headers, "Idempotency-Key": f"json-{number}-{user}"}
        first = await client.post("/api/tasks", json=body, headers=keyed)
        assert_model_bytes(first, ONE)
        replayed = await client.post("/api/tasks", json=body, headers=keyed)
        assert replayed.headers["idempotent-replayed"] == "true"
        assert replayed.content == first.content
        assert replayed.headers["location"] == first.headers["location"]


def test_task_keys_are_plain_strings() -> None:
    # pydantic-core writes a str subclass (SQLAlchemy's column names) as a key only after
    # inspecting it: a list took ten times longer to serialize.
    row = dict.fromkeys(TaskRead.model_fields) | {"priority": 2, "tags": "a,b"}
    assert all(type(name) is str for name in task_from_row(row))
