"""Idempotency keys: a retried create or toggle writes once and answers the same again."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from httpx import AsyncClient

from tests.conftest import SECRET, auth, new_user
from tests.server import running_server, service_environment
from todo_api.database import parse_database_url
from todo_api.tasks.idempotency import IdempotentWrites

Create = Callable[..., Any]


def keyed(user: str, key: str) -> dict[str, str]:
    return auth(user) | {"Idempotency-Key": key}


async def titles(client: AsyncClient, user: str) -> list[str]:
    listed = await client.get("/api/tasks", params={"limit": 1000}, headers=auth(user))
    return [task["title"] for task in listed.json()]


async def test_a_retried_create_gets_the_first_response_and_makes_no_second_task(
    client: AsyncClient, user: str
) -> None:
    key = str(uuid.uuid4())
    first = await client.post("/api/tasks", json={"title": "once"}, headers=keyed(user, key))
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    again = await client.post("/api/tasks", json={"title": "once"}, headers=keyed(user, key))
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["etag"] == first.headers["etag"] == '"1"'
    assert await titles(client, user) == ["once"]


async def test_a_retried_toggle_flips_once(
    client: AsyncClient, user: str, create_task: Create
) -> None:
    task = await create_task(user)
    path = f"/api/tasks/{task['id']}/complete"
    key = "toggle-" + uuid.uuid4().hex
    first = await client.patch(path, headers=keyed(user, key))
    retries = [await client.patch(path, headers=keyed(user, key)) for _ in range(3)]
    assert first.json()["completed"] is True
    assert all(retry.json() == first.json() for retry in retries)
    assert all(retry.headers["idempotent-replayed"] == "true" for retry in retries)
    current = await client.get(f"/api/tasks/{task['id']}", headers=auth(user))
    assert current.json()["completed"] is True
    assert current.json()["version"] == 2


async def test_the_same_key_with_another_request_is_422(
    client: AsyncClient, user: str, create_task: Create
) -> None:
    key = uuid.uuid4().hex
    await client.post("/api/tasks", json={"title": "a"}, headers=keyed(user, key))
    other_body = await client.post("/api/tasks", json={"title": "b"}, headers=keyed(user, key))
    assert other_body.status_code == 422
    assert other_body.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    task = await create_task(user, "c")
    other_path = await client.patch(f"/api/tasks/{task['id']}/complete", headers=keyed(user, key))
    assert other_path.status_code == 422
    assert sorted(await titles(client, user)) == ["a", "c"]


async def test_keys_are_scoped_to_the_caller(client: AsyncClient) -> None:
    alice, bob = new_user(), new_user()
    key = "shared-key"
    for user in (alice, bob):
        response = await client.post("/api/tasks", json={"title": user}, headers=keyed(user, key))
        assert response.status_code == 201
        assert "idempotent-replayed" not in response.headers
        assert await titles(client, user) == [user]


async def test_a_client_error_is_kept_and_replayed(client: AsyncClient, user: str) -> None:
    key = uuid.uuid4().hex
    path = "/api/tasks/999999999/complete"
    first = await client.patch(path, headers=keyed(user, key))
    again = await client.patch(path, headers=keyed(user, key))
    assert first.status_code == again.status_code == 404
    assert again.json() == first.json() == {"detail": "Task not found"}
    assert again.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "é".encode(), '""'])
async def test_a_malformed_key_is_422(client: AsyncClient, user: str, key: str | bytes) -> None:
    response = await client.post(
        "/api/tasks", json={"title": "t"}, headers=auth(user) | {"Idempotency-Key": key}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert await titles(client, user) == []


async def test_a_quoted_key_as_the_draft_writes_it_is_the_same_key(
    client: AsyncClient, user: str
) -> None:
    first = await client.post("/api/tasks", json={"title": "q"}, headers=keyed(user, '"k-1"'))
    again = await client.post("/api/tasks", json={"title": "q"}, headers=keyed(user, "k-1"))
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()


@pytest.mark.postgres
async def test_concurrent_identical_creates_make_exactly_one_task(
    client: AsyncClient, user: str
) -> None:
    key = uuid.uuid4().hex
    responses = await asyncio.gather(
        *(
            client.post("/api/tasks", json={"title": "raced"}, headers=keyed(user, key))
            for _ in range(20)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) <= {201, 409}
    created = {response.json()["id"] for response in responses if response.status_code == 201}
    assert len(created) == 1
    assert await titles(client, user) == ["raced"]
    # Once the first has finished, a retry is answered from the store.
    retry = await client.post("/api/tasks", json={"title": "raced"}, headers=keyed(user, key))
    assert retry.headers["idempotent-replayed"] == "true"


@pytest.mark.postgres
async def test_a_repeat_while_the_first_is_running_is_409(
    client: AsyncClient, user: str, create_task: Create, database_url: str
) -> None:
    await create_task(user, "earlier")
    key = uuid.uuid4().hex
    # Hold the user's row of counters, which every write of the user's tasks updates: the
    # first request stops inside its transaction, holding its key.
    url, arguments = parse_database_url(database_url)
    blocker = await asyncpg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
        **arguments,
    )
    try:
        async with blocker.transaction():
            await blocker.execute("SELECT 1 FROM task_counts WHERE user_id = $1 FOR UPDATE", user)
            first = asyncio.create_task(
                client.post("/api/tasks", json={"title": "slow"}, headers=keyed(user, key))
            )
            await asyncio.sleep(0.5)
            assert not first.done()
            repeat = await client.post(
                "/api/tasks", json={"title": "slow"}, headers=keyed(user, key)
            )
            assert repeat.status_code == 409
            assert "still being processed" in repeat.json()["detail"]
        assert (await first).status_code == 201
    finally:
        await blocker.close()
    replay = await client.post("/api/tasks", json={"title": "slow"}, headers=keyed(user, key))
    assert replay.headers["idempotent-replayed"] == "true"
    assert sorted(await titles(client, user)) == ["earlier", "slow"]


def test_a_process_killed_after_the_commit_leaves_the_response_for_the_retry(
    database_url: str, tmp_path: Path
) -> None:
    """The write and its stored response commit together; the process dies before answering
    (SIGKILL during a test-only pause after the commit); the retry, to another process, gets
    the stored response and no second task is made."""
    user, key = new_user(), uuid.uuid4().hex
    env = service_environment(DATABASE_URL=database_url, BETTER_AUTH_SECRET=SECRET, WORKERS="1")
    paused = env | {"TEST_PAUSE_AFTER_IDEMPOTENT_WRITE_SECONDS": "60"}
    with (
        running_server(tmp_path, paused, may_be_killed=True) as doomed,
        running_server(tmp_path, env) as survivor,
        httpx.Client(base_url=survivor.url, headers=auth(user), timeout=30) as client,
    ):
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(
                httpx.post,
                f"{doomed.url}/api/tasks",
                json={"title": "survives"},
                headers=keyed(user, key),
                timeout=60,
            )
            # Committed (visible to the other process), not yet answered: kill it now.
            deadline = time.monotonic() + 30
            while not client.get("/api/tasks").json():
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert not first.done()
            doomed.process.kill()
            with pytest.raises(httpx.TransportError):
                first.result()
        retry = client.post(
            "/api/tasks", json={"title": "survives"}, headers={"Idempotency-Key": key}
        )
        assert retry.status_code == 201
        assert retry.headers["idempotent-replayed"] == "true"
        assert retry.json()["title"] == "survives"
        assert [task["id"] for task in client.get("/api/tasks").json()] == [retry.json()["id"]]


QUOTED = {
    "title": 'Wöchentliche "Überprüfung" — 週次レビュー 🗓️',
    "description": 'Quotes " and \\ backslashes, tabs\tand\nnew lines; \u2028 too',
}


@pytest.fixture
def one_statement_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The keyed writes' transaction refused (a 500): what still succeeds was written in one
    statement."""

    async def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the write took the transaction")

    monkeypatch.setattr(IdempotentWrites, "run", refused)


@pytest.mark.postgres
@pytest.mark.parametrize("body", [None, {"completed": True}, {"completed": False}])
async def test_a_keyed_completion_is_one_statement(
    client: AsyncClient,
    user: str,
    create_task: Create,
    one_statement_only: None,
    body: dict[str, bool] | None,
) -> None:
    for fields in ({"title": "plain"}, QUOTED | {"due_at": "2026-03-29T09:00:00.123456+02:00"}):
        task = await create_task(user, **fields)
        path = f"/api/tasks/{task['id']}/complete"
        key = uuid.uuid4().hex
        first = await client.patch(path, json=body, headers=keyed(user, key))
        assert first.status_code == 200, first.text
        assert "idempotent-replayed" not in first.headers
        assert first.headers["etag"] == '"2"'
        assert first.json()["completed"] is (body is None or body["completed"])
        assert (first.json()["completed_at"] is None) is not first.json()["completed"]
        replay = await client.patch(path, json=body, headers=keyed(user, key))
        assert replay.status_code == 500  # a replay is read in the transaction


@pytest.mark.postgres
@pytest.mark.parametrize("body", [None, {"completed": True}, {"completed": False}])
async def test_a_keyed_completion_replays_its_bytes(
    client: AsyncClient, user: str, create_task: Create, body: dict[str, bool] | None
) -> None:
    for fields in ({"title": "plain"}, QUOTED | {"due_at": "2026-03-29T09:00:00.123456+02:00"}):
        task = await create_task(user, **fields)
        path = f"/api/tasks/{task['id']}/complete"
        for _ in range(2):  # from open, and from completed
            key = uuid.uuid4().hex
            first = await client.patch(path, json=body, headers=keyed(user, key))
            assert first.status_code == 200, first.text
            again = await client.patch(path, json=body, headers=keyed(user, key))
            assert again.headers["idempotent-replayed"] == "true"
            assert again.content == first.content
            assert again.headers["etag"] == first.headers["etag"]
            current = await client.get(f"/api/tasks/{task['id']}", headers=auth(user))
            assert current.content == first.content


@pytest.mark.postgres
async def test_a_keyed_create_replays_its_bytes_and_creates_once(
    client: AsyncClient, user: str
) -> None:
    key = uuid.uuid4().hex
    body = QUOTED | {"priority": "HIGH", "due_at": "2026-03-29T09:00:00.5+02:00"}
    first = await client.post("/api/tasks", json=body, headers=keyed(user, key))
    assert first.status_code == 201, first.text
    again = await client.post("/api/tasks", json=body, headers=keyed(user, key))
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["etag"] == first.headers["etag"] == '"1"'
    assert first.headers["location"].endswith(f"/tasks/{first.json()['id']}")
    assert await titles(client, user) == [QUOTED["title"]]
    other = await client.post("/api/tasks", json=body | {"title": "x"}, headers=keyed(user, key))
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert await titles(client, user) == [QUOTED["title"]]


@pytest.mark.postgres
async def test_a_keyed_create_without_tags_is_one_statement(
    client: AsyncClient, user: str, one_statement_only: None
) -> None:
    first = await client.post("/api/tasks", json=QUOTED, headers=keyed(user, "one"))
    assert first.status_code == 201, first.text
    assert first.json()["title"] == QUOTED["title"]
    replay = await client.post("/api/tasks", json=QUOTED, headers=keyed(user, "one"))
    assert replay.status_code == 500  # a replay is read in the transaction
    tagged = {"title": "t", "tags": ["a"]}
    with_tags = await client.post("/api/tasks", json=tagged, headers=keyed(user, "2"))
    assert with_tags.status_code == 500  # the tags' rows are written in the transaction


@pytest.mark.postgres
async def test_a_keyed_completion_of_a_recurring_task_creates_one_next_and_replays(
    client: AsyncClient, user: str, create_task: Create
) -> None:
    task = await create_task(user, recurrence="FREQ=DAILY", due_at="2026-06-01T09:00:00Z")
    path = f"/api/tasks/{task['id']}/complete"
    key = uuid.uuid4().hex
    first = await client.patch(path, headers=keyed(user, key))
    assert first.status_code == 200, first.text
    assert 'rel="next-occurrence"' in first.headers["link"]
    again = await client.patch(path, headers=keyed(user, key))
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    listed = await client.get("/api/tasks", headers=auth(user))
    assert len(listed.json()) == 2
    assert sorted(t["due_at"] for t in listed.json()) == [
        "2026-06-01T09:00:00Z",
        "2026-06-02T09:00:00Z",
    ]
