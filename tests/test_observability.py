"""Request ids, the access log, health and readiness, the docs, and CORS."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from httpx import AsyncClient

from tests.conftest import auth, make_settings
from todo_api.logs import configure_logging


async def test_request_id_is_generated(client: AsyncClient) -> None:
    first = await client.get("/health")
    second = await client.get("/health")
    assert len(first.headers["x-request-id"]) >= 16
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_sane_request_id_is_echoed_on_success_and_error(
    client: AsyncClient, user: str
) -> None:
    for path, headers in [("/health", {}), ("/api/tasks", {}), ("/api/tasks", auth(user))]:
        response = await client.get(path, headers=headers | {"X-Request-ID": "req-42.a:b"})
        assert response.headers["x-request-id"] == "req-42.a:b"


@pytest.mark.parametrize("incoming", ["x" * 200, "has space", "new\\nline", "<script>", ""])
async def test_insane_request_id_is_replaced(client: AsyncClient, incoming: str) -> None:
    response = await client.get("/health", headers={"X-Request-ID": incoming})
    assert response.headers["x-request-id"] != incoming
    assert len(response.headers["x-request-id"]) == 32


async def test_one_access_log_line_per_request_with_user_and_id(
    client: AsyncClient,
    user: str,
    tasks_path: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="todo_api.access")
    await client.post(
        "/api/tasks", json={"title": "x"}, headers=auth(user) | {"X-Request-ID": "log-test-1"}
    )
    lines = [record for record in caplog.records if record.name == "todo_api.access"]
    assert len(lines) == 1
    line = lines[0]
    assert line.method == "POST"  # type: ignore[attr-defined]
    assert line.path == tasks_path(user)  # type: ignore[attr-defined]
    assert line.status == 201  # type: ignore[attr-defined]
    assert line.user_id == user  # type: ignore[attr-defined]
    assert line.duration_ms >= 0  # type: ignore[attr-defined]
    message = line.getMessage()
    assert f"POST {tasks_path(user)} 201" in message
    assert f"user={user}" in message


async def test_health_needs_no_token_and_names_the_version(client: AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert isinstance(body["version"], str)
    assert body["version"]


async def test_ready_when_the_database_answers(client: AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
async def test_docs_are_served(client: AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200


async def test_openapi_declares_the_bearer_scheme_on_api_operations(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"].lower() == "bearer" for s in schemes.values())
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            secured = bool(operation.get("security"))
            assert secured == path.startswith("/api/"), (method, path)


async def test_cors_preflight_from_an_allowed_origin(client: AsyncClient) -> None:
    response = await client.options(
        "/api/tasks",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


async def test_cors_exposes_the_headers_a_frontend_reads(client: AsyncClient, user: str) -> None:
    response = await client.get(
        "/api/tasks", headers=auth(user) | {"Origin": "http://localhost:3000"}
    )
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert {"x-total-count", "link", "location", "x-request-id"} <= exposed


async def test_cors_headers_reach_error_responses(client: AsyncClient) -> None:
    response = await client.get("/api/tasks", headers={"Origin": "http://localhost:3000"})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"


async def test_cors_refuses_other_origins(client: AsyncClient, user: str) -> None:
    response = await client.get(
        "/api/tasks", headers=auth(user) | {"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in response.headers


async def test_a_refused_cors_preflight_is_a_json_error(client: AsyncClient) -> None:
    response = await client.options(
        "/api/tasks",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, x-unknown",
        },
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert detail.startswith("Disallowed CORS origin, headers")
    assert "access-control-allow-origin" not in response.headers


async def test_a_client_cannot_split_a_text_log_line(
    client: AsyncClient, user: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging(make_settings("sqlite+aiosqlite://", log_json=False))
    try:
        await client.get("/api/tasks%0A2026-01-01 INFO forged: GET /x 200", headers=auth(user))
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = [line for line in capsys.readouterr().err.splitlines() if "todo_api.access" in line]
    assert len(lines) == 1
    assert "\\x0a2026-01-01 INFO forged" in lines[0]
