"""Shared fixtures: a real database (SQLite, or PostgreSQL from TEST_DATABASE_URL) behind the app.

Every test works as its own freshly named users, so tests share one migrated database without
seeing each other's tasks, and the suite proves isolation all the time as a side effect.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from todo_api.database import create_engine, parse_database_url
from todo_api.http.app import create_app
from todo_api.migrations import upgrade
from todo_api.settings import Settings

SECRET = "test-secret-long-enough-for-every-hmac-algorithm-0123456789abcdef"


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "better_auth_secret": SECRET,
        # Every in-process request comes from one address, whose budget the whole session would
        # share: tests/test_rate_limits.py turns limits on for the apps it makes.
        "rate_limit": "0",
        "_env_file": None,
    }
    return Settings(**(values | overrides))


def token_for(
    user_id: Any, *, secret: str = SECRET, algorithm: str = "HS256", **claims: Any
) -> str:
    now = int(time.time())
    payload = {"sub": user_id, "iat": now, "exp": now + 600} | claims
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm)


def auth(user_id: str, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user_id, **claims)}"}


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def postgres_database(server_url: str) -> AsyncIterator[str]:
    """A new, empty database on the server `server_url` points at; dropped afterwards."""
    url, _ = parse_database_url(server_url)
    name = f"todo_api_test_{uuid.uuid4().hex[:10]}"
    # The service's own engine settings, so this works through a transaction-mode pooler too.
    admin = create_engine(make_settings(server_url)).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server_url.replace(f"/{url.database}", f"/{name}", 1)
        finally:
            async with admin.connect() as connection:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgres: needs PostgreSQL; runs in the passes with TEST_DATABASE_URL"
    )


def pytest_report_header() -> str:
    if os.environ.get("TEST_DATABASE_URL"):
        return "database: PostgreSQL (TEST_DATABASE_URL)"
    return (
        "database: SQLite; tests marked `postgres` are deselected "
        "(set TEST_DATABASE_URL to run them, as .ci/run does)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without TEST_DATABASE_URL, leave out the tests that need a PostgreSQL server: those
    marked `postgres`, and those that put a PgBouncer in front of it."""
    if os.environ.get("TEST_DATABASE_URL"):
        return
    needs_postgres = [
        item
        for item in items
        if item.get_closest_marker("postgres") or "pgbouncer" in getattr(item, "fixturenames", ())
    ]
    if needs_postgres:
        config.hook.pytest_deselected(items=needs_postgres)
        items[:] = [item for item in items if item not in needs_postgres]


@pytest.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'tasks.db'}"
        return
    async with postgres_database(server) as url:
        yield url


@pytest.fixture(scope="session")
async def app(database_url: str) -> AsyncIterator[FastAPI]:
    application = create_app(make_settings(database_url))
    await upgrade(application.state.services.engine)
    yield application
    await application.state.services.aclose()


class GuidePathsTransport(httpx.AsyncBaseTransport):
    """Sends each request for `/api/tasks...` to the guide's `/api/{user_id}/tasks...` instead,
    with the user id of the request's own token (or a made-up one when it has none), so that a
    test written against one set of paths proves the same behaviour on the other."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path
        prefix = b"/api/tasks"
        if path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] in (b"", b"/", b"?"):
            subject = _unverified_subject(request.headers.get("authorization"))
            # A lone surrogate in a (refused) subject still makes a path: its bytes escaped.
            user = quote(subject, safe="", errors="surrogatepass")
            guide = f"/api/{user}/tasks".encode() + path[len(prefix) :]
            request.url = request.url.copy_with(raw_path=guide)
        return await self._inner.handle_async_request(request)


def _unverified_subject(authorization: str | None) -> str:
    try:
        token = (authorization or "").partition(" ")[2]
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return "no-token-user"
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return subject if isinstance(subject, str) and subject else "no-subject-user"


PATH_STYLES = ("api-tasks", "guide-paths")


@asynccontextmanager
async def client_for(
    application: FastAPI, path_style: str = "api-tasks"
) -> AsyncIterator[httpx.AsyncClient]:
    transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=application)
    if path_style == "guide-paths":
        transport = GuidePathsTransport(transport)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture(params=PATH_STYLES)
def path_style(request: pytest.FixtureRequest) -> str:
    """Every test that uses `client` runs twice: on `/api/tasks...` and on the guide's
    `/api/{user_id}/tasks...` paths."""
    style: str = request.param
    return style


@pytest.fixture
async def client(app: FastAPI, path_style: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app, path_style) as http:
        yield http


@pytest.fixture
def tasks_path(path_style: str) -> Callable[[str], str]:
    """The collection path a `client` request for `user_id` is actually sent to."""
    if path_style == "guide-paths":
        return lambda user_id: f"/api/{quote(user_id, safe='')}/tasks"
    return lambda _user_id: "/api/tasks"


@pytest.fixture
def user() -> str:
    return new_user()


@pytest.fixture
def create_task(client: httpx.AsyncClient) -> Callable[..., Any]:
    async def create(user_id: str, title: str = "A task", **fields: Any) -> dict[str, Any]:
        response = await client.post(
            "/api/tasks", json={"title": title, **fields}, headers=auth(user_id)
        )
        assert response.status_code == 201, response.text
        task: dict[str, Any] = response.json()
        return task

    return create
