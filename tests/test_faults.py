"""Database faults: a clear 503 with Retry-After while it is unreachable, and recovery on return."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.conftest import SECRET, auth, client_for, make_settings, new_user, postgres_database
from tests.pgbouncer import PgBouncer, pgbouncer, pgbouncer_on_free_port
from tests.server import running_server, service_environment
from todo_api.database import create_engine
from todo_api.http.app import create_app
from todo_api.migrations import upgrade

__all__ = ["pgbouncer"]  # a fixture


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
    await application.state.services.aclose()


@pytest.mark.postgres
async def test_a_database_refusing_the_settings_at_request_time_is_503(database_url: str) -> None:
    """Start-up stops on refused settings; a refusal that comes later (a database dropped or a
    password rotated under a running service) is the operator's fault, not the client's."""
    missing = make_url(database_url).set(database="todo_api_no_such_database")
    application = create_app(make_settings(missing.render_as_string(hide_password=False)))
    async with client_for(application) as client:
        response = await client.get("/api/tasks", headers=auth(new_user()))
    assert_unavailable(response)
    await application.state.services.aclose()


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
    await application.state.services.aclose()


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
    await application.state.services.aclose()
    # The healthy app beside it is untouched.
    assert (await client.get("/health/ready")).status_code == 200


# --- PostgreSQL: connections dropped, a pooler killed or paused under a real server -----------


async def terminate_other_connections(database_url: str) -> int:
    """What a scale-to-zero suspend or a pooler restart does to the service's open connections."""
    engine = create_engine(make_settings(database_url, db_pool_size=1, db_max_overflow=0))
    try:
        async with engine.connect() as connection:
            killed = await connection.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        await engine.dispose()
    return int(killed or 0)


@pytest.mark.postgres
async def test_connections_dropped_while_idle_are_replaced_without_a_failed_request(
    client: AsyncClient, database_url: str
) -> None:
    user = new_user()
    # Several pooled connections open at once, then idle.
    warm = await asyncio.gather(*(client.get("/api/tasks", headers=auth(user)) for _ in range(8)))
    assert {response.status_code for response in warm} == {200}

    assert await terminate_other_connections(database_url) >= 1
    await asyncio.sleep(1.2)  # idle for longer than DB_IDLE_CHECK_SECONDS

    responses = await asyncio.gather(
        *(client.post("/api/tasks", json={"title": f"t{n}"}, headers=auth(user)) for n in range(8)),
        *(client.get("/api/tasks", headers=auth(user)) for _ in range(8)),
    )
    assert [response.status_code for response in responses] == [201] * 8 + [200] * 8


@dataclass
class Outcome:
    status: int | str  # an HTTP status, or "timeout" for a request that hung
    seconds: float
    task_id: int | None = None
    retry_after: str | None = None


class Traffic:
    """Writers POSTing tasks for one user as fast as the server answers, recording every answer."""

    def __init__(self, base_url: str, user: str, writers: int = 4) -> None:
        self.outcomes: list[Outcome] = []
        self._base_url = base_url
        self._user = user
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write) for _ in range(writers)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def since(self, moment: float) -> list[Outcome]:
        return [o for o in list(self.outcomes) if o.seconds >= moment]

    def _write(self) -> None:
        with httpx.Client(base_url=self._base_url, headers=auth(self._user), timeout=10) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = http.post("/api/tasks", json={"title": "under traffic"})
                except httpx.TimeoutException:
                    self.outcomes.append(Outcome("timeout", time.monotonic() - started))
                    continue
                except httpx.TransportError:
                    self.outcomes.append(Outcome("connection error", time.monotonic() - started))
                    continue
                outcome = Outcome(response.status_code, time.monotonic() - started)
                if response.status_code == 201:
                    outcome.task_id = response.json()["id"]
                outcome.retry_after = response.headers.get("retry-after")
                self.outcomes.append(outcome)
                if response.status_code == 503:
                    time.sleep(0.05)


def wait_for(condition: Callable[[], bool], within: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {within}s")


def stored_ids(base_url: str, user: str) -> set[int]:
    ids: set[int] = set()
    with httpx.Client(base_url=base_url, headers=auth(user), timeout=10) as http:
        while True:
            page = http.get("/api/tasks", params={"limit": 1000, "offset": len(ids)})
            assert page.status_code == 200, page.text
            ids |= {task["id"] for task in page.json()}
            if len(ids) >= int(page.headers["x-total-count"]):
                return ids


def pooled_service(bouncer: PgBouncer, database_url: str) -> dict[str, str]:
    """A service that reaches the test database through `bouncer`, with short timeouts."""
    return service_environment(
        DATABASE_URL=bouncer.url(str(make_url(database_url).database)),
        BETTER_AUTH_SECRET=SECRET,
        DB_POOLER="transaction",
        DB_CONNECT_TIMEOUT_SECONDS="2",
        DB_STATEMENT_TIMEOUT_SECONDS="3",
        DB_POOL_TIMEOUT_SECONDS="2",
    )


def test_database_going_away_under_traffic(
    pgbouncer: PgBouncer, database_url: str, tmp_path: Path
) -> None:
    """Kill the pooler between a real server and PostgreSQL while writers run, then bring it
    back: only 201 or a prompt 503 with Retry-After, the process stays up and recovers by
    itself, and every write answered 201 is stored."""
    user = new_user()
    with (
        running_server(tmp_path, pooled_service(pgbouncer, database_url)) as server,
        Traffic(server.url, user) as traffic,
    ):
        wait_for(lambda: len(traffic.outcomes) > 20, 15, "traffic")
        pgbouncer.kill()
        wait_for(lambda: any(o.status == 503 for o in traffic.outcomes), 10, "a 503")
        time.sleep(2)
        assert server.process.poll() is None
        restarted = len(traffic.outcomes)
        pgbouncer.start()
        recovery = wait_for(
            lambda: any(o.status == 201 for o in traffic.outcomes[restarted:]), 15, "recovery"
        )
        time.sleep(0.5)

    statuses = Counter(o.status for o in traffic.outcomes)
    assert set(statuses) <= {201, 503}, statuses
    unavailable = [o for o in traffic.outcomes if o.status == 503]
    assert all(o.retry_after and int(o.retry_after) > 0 for o in unavailable)
    slowest = max(o.seconds for o in traffic.outcomes)
    assert slowest < 5, f"a request took {slowest:.1f}s"
    assert recovery < 10
    answered = {o.task_id for o in traffic.outcomes if o.task_id is not None}
    with running_server(tmp_path, pooled_service(pgbouncer, database_url)) as again:
        assert answered <= stored_ids(again.url, user)
    print(
        f"\n{statuses[201]} writes answered 201 (all stored), {statuses[503]} answered 503; "
        f"slowest answer {slowest:.2f}s; serving again {recovery:.1f}s after the pooler returned"
    )


def test_sigterm_lets_an_in_flight_request_finish(
    pgbouncer: PgBouncer, database_url: str, tmp_path: Path
) -> None:
    """A request held by a paused pooler is answered after SIGTERM; then the process exits."""
    user = new_user()
    with running_server(tmp_path, pooled_service(pgbouncer, database_url)) as server:
        held: list[httpx.Response] = []
        with httpx.Client(base_url=server.url, headers=auth(user), timeout=20) as http:
            assert http.post("/api/tasks", json={"title": "before"}).status_code == 201
            pgbouncer.pause()
            request = threading.Thread(
                target=lambda: held.append(http.post("/api/tasks", json={"title": "in flight"}))
            )
            request.start()
            time.sleep(0.7)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.7)
            assert request.is_alive(), "the request was answered before the pooler resumed"
            assert server.process.poll() is None, "the server quit with a request in flight"
            pgbouncer.resume()
            request.join(timeout=15)
        assert server.process.wait(timeout=15) in (0, -signal.SIGTERM)
    assert [response.status_code for response in held] == [201]
    with running_server(tmp_path, pooled_service(pgbouncer, database_url)) as again:
        assert held[0].json()["id"] in stored_ids(again.url, user)


@pytest.mark.postgres
@pytest.mark.parametrize("workers", [1, 2])
def test_service_started_while_the_database_is_down(tmp_path: Path, workers: int) -> None:
    """`serve` comes up anyway: /health answers, readiness and the API say 503 with Retry-After;
    once the database appears, every worker migrates (one at a time, under the advisory lock)
    and serves, with no restart."""
    with (
        pgbouncer_on_free_port(start=False) as bouncer,
        fresh_postgres_database() as database_url,
    ):
        env = pooled_service(bouncer, database_url) | {"WORKERS": str(workers)}
        user = new_user()
        with running_server(tmp_path, env) as server:
            # A new connection for each request, so that every worker gets asked.
            def fresh(method: str, path: str, **kwargs: Any) -> httpx.Response:
                headers = {"Connection": "close", **kwargs.pop("headers", {})}
                return httpx.request(method, server.url + path, headers=headers, **kwargs)

            assert fresh("GET", "/health").status_code == 200
            for response in (
                fresh("GET", "/health/ready"),
                fresh("POST", "/api/tasks", json={"title": "x"}, headers=auth(user)),
            ):
                assert_unavailable(response)
            assert "serving anyway" in server.log.read_text()

            bouncer.start()
            wait_for(
                lambda: all(fresh("GET", "/health/ready").status_code == 200 for _ in range(10)),
                20,
                "readiness of every worker",
            )
            for _ in range(5):
                created = fresh("POST", "/api/tasks", json={"title": "x"}, headers=auth(user))
                assert created.status_code == 201, created.text
            # A worker still starting (importing) when the first requests came in migrates as
            # soon as it is up.
            wait_for(
                lambda: server.log.read_text().count("Database schema is up to date") >= workers,
                20,
                "every worker's migration",
            )


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new empty database on the test server, for a sync test (its own event loop)."""
    databases = postgres_database(os.environ["TEST_DATABASE_URL"])
    loop = asyncio.new_event_loop()
    try:
        yield loop.run_until_complete(databases.__aenter__())
    finally:
        loop.run_until_complete(databases.__aexit__(None, None, None))
        loop.close()


@pytest.mark.postgres
async def test_a_statement_over_the_timeout_is_503_and_the_connection_recovers(
    app: FastAPI, database_url: str
) -> None:
    """A toggle stuck behind another transaction's row lock is cancelled at the statement
    timeout (by the server, or by the client behind a transaction pooler): 503, not a hang."""
    # `app` has migrated the database; this one shares it with a one-second statement timeout.
    application = create_app(make_settings(database_url, db_statement_timeout_seconds=1))
    engine = application.state.services.engine
    user = new_user()
    async with client_for(application) as client:
        created = await client.post("/api/tasks", json={"title": "locked"}, headers=auth(user))
        path = f"/api/tasks/{created.json()['id']}/complete"
        async with engine.connect() as locker, locker.begin():
            await locker.execute(
                text("SELECT id FROM tasks WHERE id = :id FOR UPDATE"), {"id": created.json()["id"]}
            )
            started = time.monotonic()
            assert_unavailable(await client.patch(path, headers=auth(user)))
            assert time.monotonic() - started < 5
        assert (await client.patch(path, headers=auth(user))).status_code == 200
    await application.state.services.aclose()


async def test_a_database_that_stops_answering_is_503_within_the_statement_timeout(
    app: FastAPI, pgbouncer: PgBouncer, database_url: str
) -> None:
    """Connections open but nothing answers (a paused pooler, a network path gone silent):
    the request is not left hanging; it gets 503 once its statement has waited for the
    statement timeout, and the next request after the pooler answers again is served."""
    settings = make_settings(
        pgbouncer.url(str(make_url(database_url).database)),
        db_pooler="transaction",
        db_statement_timeout_seconds=1,
        db_connect_timeout_seconds=1,
    )
    application = create_app(settings)
    user = new_user()
    async with client_for(application) as client:
        assert (await client.get("/api/tasks", headers=auth(user))).status_code == 200
        pgbouncer.pause()
        started = time.monotonic()
        responses = await asyncio.gather(
            client.get("/api/tasks", headers=auth(user)),
            client.post("/api/tasks", json={"title": "x"}, headers=auth(user)),
        )
        waited = time.monotonic() - started
        pgbouncer.resume()
        for response in responses:
            assert_unavailable(response)
        # The timeout, plus asyncpg cancelling the stuck statement (about two seconds here).
        assert waited < 6, f"answered after {waited:.1f} s"
        created = await client.post("/api/tasks", json={"title": "x"}, headers=auth(user))
        assert created.status_code == 201, created.text
    await application.state.services.aclose()
