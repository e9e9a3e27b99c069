"""Database faults: a clear 503 with Retry-After while it is unreachable, and recovery on return."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from httpx import AsyncClient

from tests.conftest import auth, client_for, make_settings, new_user
from todo_api.http.app import create_app
from todo_api.migrations import upgrade


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_unavailable(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    assert "unavailable" in response.json()["detail"].lower()


async def test_unreachable_postgres_is_503_quickly() -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/test"
    application = create_app(make_settings(url))
    user = new_user()
    async with client_for(application) as client:
        started = time.monotonic()
        for method, path in [
            ("GET", "/api/tasks"),
            ("POST", "/api/tasks"),
            ("GET", "/api/tasks/1"),
        ]:
            assert_unavailable(
                await client.request(method, path, json={"title": "x"}, headers=auth(user))
            )
        assert_unavailable(await client.get("/health/ready"))
        assert (await client.get("/health")).status_code == 200
        assert time.monotonic() - started < 10
    await application.state.services.engine.dispose()


async def test_service_recovers_when_the_database_appears(tmp_path: Path) -> None:
    """Starts with the SQLite file's folder missing; serves once it exists and is migrated."""
    database = tmp_path / "later" / "tasks.db"
    application = create_app(make_settings(f"sqlite+aiosqlite:///{database}"))
    engine = application.state.services.engine
    user = new_user()
    async with client_for(application) as client:
        assert_unavailable(await client.post("/api/tasks", json={"title": "x"}, headers=auth(user)))
        assert_unavailable(await client.get("/health/ready"))

        database.parent.mkdir()
        await upgrade(engine)

        assert (await client.get("/health/ready")).status_code == 200
        created = await client.post("/api/tasks", json={"title": "x"}, headers=auth(user))
        assert created.status_code == 201
    await engine.dispose()


async def test_requests_fail_fast_while_the_database_is_down(client: AsyncClient) -> None:
    """Many concurrent requests against a dead server: all 503, none hang."""
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/test"
    application = create_app(
        make_settings(url, db_pool_size=2, db_max_overflow=0, db_pool_timeout_seconds=1)
    )
    user = new_user()
    async with client_for(application) as dead:
        responses = await asyncio.wait_for(
            asyncio.gather(*(dead.get("/api/tasks", headers=auth(user)) for _ in range(20))),
            timeout=30,
        )
    assert {response.status_code for response in responses} == {503}
    await application.state.services.engine.dispose()
    # The healthy app beside it is untouched.
    assert (await client.get("/health/ready")).status_code == 200
