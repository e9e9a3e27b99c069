"""Bad input of any shape gets a clear 4xx; nothing a client sends produces a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response

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


# Each endpoint that takes a body, and a field of it that no JSON number or odd string fits.
BODY_FIELDS = [
    ("POST", "/api/tasks", "title"),
    ("PUT", "/api/tasks/{id}", "title"),
    ("PATCH", "/api/tasks/{id}/complete", "completed"),
]

Send = Callable[[str, str, bytes], Awaitable[Response]]


@pytest.fixture
async def send(client: AsyncClient, user: str, create_task) -> AsyncIterator[Send]:
    """Sends a raw JSON body to an endpoint about a task of `user`, then checks that the task
    is as it was and that no other task was made."""
    task = await create_task(user)

    async def request(method: str, path: str, body: bytes) -> Response:
        url = path.format(id=task["id"])
        return await client.request(method, url, content=body, headers=auth(user) | JSON)

    yield request
    assert (await client.get("/api/tasks", headers=auth(user))).json() == [task]


def problem_at(response: Response, *loc: str | int) -> dict[str, Any]:
    """The 422 entry for `loc`, after checking the body is plain ASCII JSON."""
    assert response.status_code == 422, response.text
    assert response.content.isascii()
    problems = response.json()["detail"]
    found: dict[str, Any] = next(p for p in problems if p["loc"] == ["body", *loc])
    return found


@pytest.mark.parametrize(
    ("literal", "shown"),
    [(b"1e999", "Infinity"), (b"-1e999", "-Infinity"), (b"NaN", "NaN"), (b"Infinity", "Infinity")],
)
@pytest.mark.parametrize(("method", "path", "field"), BODY_FIELDS)
async def test_non_finite_number_is_422_shown_as_a_string(
    send: Send, method: str, path: str, field: str, literal: bytes, shown: str
) -> None:
    response = await send(method, path, b'{"%s": %s}' % (field.encode(), literal))
    assert problem_at(response, field)["input"] == shown


@pytest.mark.parametrize("text", ["\ud800", "x\udfffy", "\ude00\ud83d", "ok\ud83d"])
@pytest.mark.parametrize("field", ["title", "description"])
@pytest.mark.parametrize(("method", "path"), [("POST", "/api/tasks"), ("PUT", "/api/tasks/{id}")])
async def test_lone_surrogate_is_422_naming_the_field(
    send: Send, method: str, path: str, field: str, text: str
) -> None:
    body = json.dumps({"title": "kept", field: text}).encode()  # the surrogate as \\udXXX
    problem = problem_at(await send(method, path, body), field)
    assert problem["type"] == "surrogate_character"
    assert "unpaired surrogate" in problem["msg"]
    assert problem["input"] == text


async def test_surrogate_pair_is_one_character_and_is_stored(
    client: AsyncClient, user: str
) -> None:
    body = b'{"title": "\\ud83d\\ude00 done", "description": "caf\\u00e9"}'
    response = await client.post("/api/tasks", content=body, headers=auth(user) | JSON)
    assert response.status_code == 201, response.text
    task = await client.get(f"/api/tasks/{response.json()['id']}", headers=auth(user))
    assert (task.json()["title"], task.json()["description"]) == ("\U0001f600 done", "café")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"9" * 5000, "a number has more than 4300 digits"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'"caf\xe9"', "not UTF-8"),
    ],
    ids=["huge integer", "deep nesting", "latin-1"],
)
@pytest.mark.parametrize(("method", "path", "field"), BODY_FIELDS)
async def test_json_that_python_cannot_decode_is_400_with_the_reason(
    send: Send, method: str, path: str, field: str, value: bytes, reason: str
) -> None:
    response = await send(method, path, b'{"%s": %s}' % (field.encode(), value))
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("Request body is not valid JSON: ")
    assert reason in response.json()["detail"]


@pytest.mark.parametrize(("method", "path", "field"), BODY_FIELDS)
async def test_input_too_deep_to_repeat_is_left_out_of_the_422(
    send: Send, method: str, path: str, field: str
) -> None:
    for depth, echoed in [(5, True), (900, False)]:
        body = b'{"%s": %s}' % (field.encode(), b"[" * depth + b"]" * depth)
        problem = problem_at(await send(method, path, body), field)
        assert ("input" in problem) is echoed
        assert problem["msg"]


async def test_longest_integer_python_reads_is_a_422(client: AsyncClient, user: str) -> None:
    body = b'{"title": -' + b"9" * 4300 + b"}"
    response = await client.post("/api/tasks", content=body, headers=auth(user) | JSON)
    assert problem_at(response, "title")["type"] == "string_type"


@pytest.mark.parametrize(
    "body", [b"1e999", b"NaN", b'"\\ud800"', b'"\\u0000"', b'{"title": "x", "k\\ud800": 1}']
)
async def test_odd_body_that_is_no_task_is_422(client: AsyncClient, user: str, body: bytes) -> None:
    response = await client.post("/api/tasks", content=body, headers=auth(user) | JSON)
    assert response.status_code == 422, response.text
    assert response.content.isascii()
    assert response.json()["detail"]
    assert (await client.get("/api/tasks", headers=auth(user))).json() == []


@pytest.mark.parametrize(
    "segment", ["%ED%A0%80", "%FF", "%00", "9" * 5000, "1e999", "NaN", "Infinity", "-1", "0x10"]
)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_odd_task_id_in_the_path_is_422(
    client: AsyncClient, user: str, method: str, segment: str
) -> None:
    response = await client.request(method, f"/api/tasks/{segment}", headers=auth(user))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["path", "task_id"]


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("status=%00", "status"),
        ("status=%ED%A0%80", "status"),
        ("status=all&status=%FF", "status"),
        ("limit=1e999", "limit"),
        ("limit=NaN", "limit"),
        ("limit=" + "9" * 5000, "limit"),
        ("offset=-1", "offset"),
        ("offset=%00", "offset"),
    ],
)
async def test_odd_query_value_is_422_naming_the_parameter(
    client: AsyncClient, user: str, query: str, name: str
) -> None:
    response = await client.get(f"/api/tasks?{query}", headers=auth(user))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", name]


@pytest.mark.parametrize("value", [b"\x00", b"\xff\xfe", b"\xed\xa0\x80", b" ", b"*" * 4096])
@pytest.mark.parametrize("header", ["X-Request-ID", "If-Match", "If-None-Match", "Idempotency-Key"])
async def test_odd_header_values_are_harmless(
    client: AsyncClient, user: str, create_task, header: str, value: bytes
) -> None:
    task = await create_task(user)
    response = await client.get(
        f"/api/tasks/{task['id']}",
        headers=auth(user) | {header: value},  # type: ignore[dict-item]
    )
    assert response.headers["x-request-id"].encode() != value
    if header == "If-None-Match":  # a precondition GET reads: malformed, it is refused
        assert response.status_code == 400, response.text
        assert "If-None-Match" in response.json()["detail"]
        return
    assert response.status_code == 200, response.text
    assert response.json() == task


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
