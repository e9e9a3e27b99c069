"""Live updates over server-sent events, with two real server processes on one database: a
change made through one reaches a stream open on the other within a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.conftest import SECRET, auth, new_user, token_for
from tests.server import Server, running_server, service_environment
from tests.sse import open_stream

KEEPALIVE_SECONDS = 0.5
STREAMS_PER_USER = 3


@pytest.fixture(scope="module")
def servers(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    env = service_environment(
        DATABASE_URL=database_url,
        BETTER_AUTH_SECRET=SECRET,
        WORKERS="1",
        JWT_LEEWAY_SECONDS="0",
        STREAM_KEEPALIVE_SECONDS=str(KEEPALIVE_SECONDS),
        STREAMS_PER_USER=str(STREAMS_PER_USER),
    )
    folder = tmp_path_factory.mktemp("stream-servers")
    with running_server(folder, env) as writer, running_server(folder, env) as streamer:
        yield writer, streamer


@pytest.fixture
async def clients(servers: tuple[Server, Server]) -> AsyncIterator[tuple[httpx.AsyncClient, ...]]:
    writer, streamer = (httpx.AsyncClient(base_url=s.url, timeout=30) for s in servers)
    try:
        yield writer, streamer
    finally:
        await writer.aclose()
        await streamer.aclose()


async def test_a_change_made_through_one_process_reaches_a_stream_on_the_other(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    writer, streamer = clients
    user, other = new_user(), new_user()
    await writer.post("/api/tasks", json={"title": "from before"}, headers=auth(user))
    # An empty Last-Event-ID is no cursor (EventSource sends one before it has seen an id).
    opening = auth(user) | {"Last-Event-ID": ""}
    async with open_stream(streamer, headers=opening) as stream:
        # Opened without a cursor: no snapshot, only what happens from now on.
        assert await stream.nothing_within(0.5)
        await writer.post("/api/tasks", json={"title": "someone else's"}, headers=auth(other))
        started = time.monotonic()
        created = await writer.post("/api/tasks", json={"title": "live"}, headers=auth(user))
        event = await stream.next(within=1.0)
        assert time.monotonic() - started < 1.0
        assert event.event == "change"
        assert event.item() == {"op": "upsert", "task": created.json()}
        assert event.id

        task_id = created.json()["id"]
        await writer.delete(f"/api/tasks/{task_id}", headers=auth(user))
        deleted = await stream.next(within=1.0)
        assert deleted.item() == {"op": "delete", "id": task_id}
        # Other users' changes never arrive.
        assert await stream.nothing_within(0.5)


async def test_a_stream_resumes_after_its_last_event_without_gap_or_repeat(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    writer, streamer = clients
    user = new_user()
    async with open_stream(streamer, headers=auth(user)) as stream:
        first = await writer.post("/api/tasks", json={"title": "first"}, headers=auth(user))
        seen = await stream.next(within=1.0)
    assert seen.item()["task"]["id"] == first.json()["id"]
    # Missed while disconnected.
    titles = ["second", "third"]
    for title in titles:
        await writer.post("/api/tasks", json={"title": title}, headers=auth(user))
    for resume in ({"headers": {"Last-Event-ID": seen.id}}, {"params": {"since": seen.id}}):
        options = {**resume, "headers": {**resume.get("headers", {}), **auth(user)}}
        async with open_stream(streamer, **options) as stream:
            missed = [(await stream.next(within=1.0)).item()["task"]["title"] for _ in titles]
            assert missed == titles
            assert await stream.nothing_within(0.3)


async def test_a_stream_sends_keep_alive_comments(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    _, streamer = clients
    async with open_stream(streamer, headers=auth(new_user())) as stream:
        assert await stream.nothing_within(KEEPALIVE_SECONDS * 3)
        assert stream.comments


async def test_a_stream_ends_when_its_token_expires(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    _, streamer = clients
    expiring = {"Authorization": f"Bearer {token_for(new_user(), exp=int(time.time()) + 2)}"}
    async with open_stream(streamer, headers=expiring) as stream:
        assert await stream.ended_within(4)


async def test_browsers_pass_the_token_in_the_query_and_it_is_never_logged(
    servers: tuple[Server, Server], clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    writer, streamer = clients
    user = new_user()
    token = token_for(user)
    async with open_stream(streamer, params={"access_token": token}) as stream:
        await writer.post("/api/tasks", json={"title": "for the browser"}, headers=auth(user))
        assert (await stream.next(within=1.0)).item()["task"]["title"] == "for the browser"
    refused = await streamer.get("/api/tasks/stream", params={"access_token": "not-a-token"})
    assert refused.status_code == 401
    await asyncio.sleep(0.2)
    log = servers[1].log.read_text()
    assert "/api/tasks/stream" in log
    assert token not in log
    assert "not-a-token" not in log


async def test_streams_per_user_are_capped(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    _, streamer = clients
    user = new_user()
    headers = auth(user)
    async with (
        open_stream(streamer, headers=headers),
        open_stream(streamer, headers=headers),
        open_stream(streamer, headers=headers),
    ):
        refused = await streamer.get("/api/tasks/stream", headers=headers)
        assert refused.status_code == 429
        assert refused.headers["retry-after"]
        # Another user is not affected.
        async with open_stream(streamer, headers=auth(new_user())):
            pass
    # Closed streams free their places, once the server has seen the connections go.
    deadline = time.monotonic() + 2
    while await status_of_opening(streamer, headers) == 429:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


async def status_of_opening(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    async with client.stream("GET", "/api/tasks/stream", headers=headers) as response:
        return response.status_code


async def test_an_unknown_cursor_is_gone_before_the_stream_starts(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    _, streamer = clients
    for options in ({"headers": {"Last-Event-ID": "nope"}}, {"params": {"since": "nope"}}):
        options["headers"] = {**options.get("headers", {}), **auth(new_user())}
        response = await streamer.get("/api/tasks/stream", **options)
        assert response.status_code == 410


async def test_a_stream_needs_a_token(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    _, streamer = clients
    response = await streamer.get("/api/tasks/stream")
    assert response.status_code == 401
