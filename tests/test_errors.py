"""Bad input of any shape gets a clear 4xx; nothing a client sends produces a 500."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.conftest import auth, client_for, make_settings
from todo_api.http.app import create_app

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"title": "x",}', b"{'title': 'x'}", b"nul", b'{"title": "x"} trailing', b"\xff\xfe"],
)
@pytest.mark.parametrize(("method", "path"), [("POST", "/api/tasks"), ("PUT", "/api/tasks/{id}")])
async def test_malformed_json_is_400(
    client: AsyncClient, user: str, create_task, body: bytes, method: str, path: str
) -> None:
    task = await create_task(user)
    url = path.format(id=task["id"])
    response = await client.request(method, url, content=body, headers=auth(user) | JSON)
    assert response.status_code == 400, response.text
    assert "not valid JSON" in response.json()["detail"]
    assert (await client.get(f"/api/tasks/{task['id']}", headers=auth(user))).json() == task


async def test_malformed_json_on_complete_is_400(
    client: AsyncClient, user: str, create_task
) -> None:
    task = await create_task(user)
    response = await client.patch(
        f"/api/tasks/{task['id']}/complete", content=b"{oops", headers=auth(user) | JSON
    )
    assert response.status_code == 400
    assert (await client.get(f"/api/tasks/{task['id']}", headers=auth(user))).json() == task


async def test_body_that_is_not_json_media_type_is_415(client: AsyncClient, user: str) -> None:
    response = await client.post(
        "/api/tasks",
        content=b'{"title": "x"}',
        headers=auth(user) | {"Content-Type": "text/plain"},
    )
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


async def test_json_with_charset_is_accepted(client: AsyncClient, user: str) -> None:
    response = await client.post(
        "/api/tasks",
        content='{"title": "Grüße"}'.encode(),
        headers=auth(user) | {"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201
    assert response.json()["title"] == "Grüße"


async def test_body_over_one_mebibyte_is_413(client: AsyncClient, user: str) -> None:
    body = b'{"title": "x", "description": "' + b"a" * (1024 * 1024) + b'"}'
    response = await client.post("/api/tasks", content=body, headers=auth(user) | JSON)
    assert response.status_code == 413
    assert "detail" in response.json()
    assert (await client.get("/api/tasks", headers=auth(user))).json() == []


async def test_streamed_body_over_the_limit_is_413(client: AsyncClient, user: str) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"title": "x", "description": "'
        for _ in range(17):
            yield b"a" * 65536
        yield b'"}'

    response = await client.post("/api/tasks", content=chunks(), headers=auth(user) | JSON)
    assert response.status_code == 413


async def test_body_just_under_the_limit_is_judged_on_its_content(
    client: AsyncClient, user: str
) -> None:
    body = b'{"title": "x", "description": "' + b"a" * (1024 * 1024 - 100) + b'"}'
    response = await client.post("/api/tasks", content=body, headers=auth(user) | JSON)
    assert response.status_code == 422  # too long a description, but not too large a body


@pytest.mark.parametrize("path", ["/nope", "/api", "/api/task", "/api/tasks/1/nope"])
async def test_unknown_path_is_json_404(client: AsyncClient, user: str, path: str) -> None:
    response = await client.get(path, headers=auth(user))
    assert response.status_code == 404
    assert "detail" in response.json()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/tasks"),
        ("PATCH", "/api/tasks"),
        ("POST", "/api/tasks/1"),
        ("GET", "/api/tasks/1/complete"),
    ],
)
async def test_wrong_method_is_json_405(
    client: AsyncClient, user: str, method: str, path: str
) -> None:
    response = await client.request(method, path, headers=auth(user))
    assert response.status_code == 405
    assert "detail" in response.json()
    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    assert method not in allowed
    assert allowed & {"GET", "POST", "PUT", "DELETE", "PATCH"}


async def test_allow_header_lists_every_method_of_the_path(client: AsyncClient) -> None:
    response = await client.request("PATCH", "/api/tasks")
    assert set(response.headers["allow"].split(", ")) >= {"GET", "POST"}
    response = await client.request("POST", "/api/tasks/1")
    assert set(response.headers["allow"].split(", ")) >= {"GET", "PUT", "DELETE"}


async def test_unexpected_error_is_a_bare_500(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    application: FastAPI = create_app(make_settings(database_url))

    @application.get("/boom")
    async def boom() -> None:
        raise RuntimeError("connection string postgres://admin:hunter2@db")

    async with client_for(application) as client:
        response = await client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}
    assert "hunter2" not in response.text
    assert response.headers["x-request-id"] == "boom-1"
    assert any("hunter2" in (record.exc_text or "") for record in caplog.records)
    await application.state.services.aclose()
