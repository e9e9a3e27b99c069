"""Rate limits: a budget per user, one per client address without a valid token, the RateLimit
fields, and budgets shared through Redis by real server processes, also across a Redis outage."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from fastapi import FastAPI

from tests.conftest import SECRET, auth, make_settings, new_user, token_for
from tests.issuer import JwksIssuer, SigningKey, generate_private_key
from tests.server import Server, free_port, run_cli, running_server, service_environment
from tests.test_cli import one_clear_line
from todo_api.http.app import create_app

BUDGET = 5
POLICY = f'"default";q={BUDGET};w=60'
_RATE_LIMIT = re.compile(r'"default";r=(\d+);t=(\d+)')

SHARED_REDIS = "redis://127.0.0.1:6379/11"
"""The machine's Redis; every test writes under its own key prefix and removes its keys."""


@asynccontextmanager
async def limited_app(database_url: str, **settings: str) -> AsyncIterator[FastAPI]:
    """The service with a budget of BUDGET requests a minute (in this process's memory)."""
    application = create_app(make_settings(database_url, rate_limit=f"{BUDGET}/minute", **settings))
    try:
        yield application
    finally:
        await application.state.services.aclose()


def client_at(application: FastAPI, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=application, client=(address, 40123))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def remaining(response: httpx.Response) -> int:
    """The `r` of the response's RateLimit field, after checking both fields' form."""
    assert response.headers["ratelimit-policy"] == POLICY
    match = _RATE_LIMIT.fullmatch(response.headers["ratelimit"])
    assert match, response.headers["ratelimit"]
    assert 0 <= int(match[2]) <= 60
    return int(match[1])


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/json"
    assert f"{BUDGET} requests per 60 seconds" in response.json()["detail"]
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert remaining(response) == 0
    # The request waits as long as the oldest counted one takes to leave the window.
    match = _RATE_LIMIT.fullmatch(response.headers["ratelimit"])
    assert match
    assert match[2] == str(retry_after)


async def test_each_user_has_a_budget_of_their_own(app: FastAPI, database_url: str) -> None:
    alice, bob = new_user(), new_user()
    async with limited_app(database_url) as limited, client_at(limited) as client:
        for left in range(BUDGET - 1, -1, -1):
            response = await client.get("/api/tasks", headers=auth(alice))
            assert response.status_code == 200, response.text
            assert remaining(response) == left
        refused = await client.post("/api/tasks", json={"title": "Over"}, headers=auth(alice))
        assert_refused(refused)
        # Another user, from the same address, is not held back by alice's budget.
        response = await client.get("/api/tasks", headers=auth(bob))
        assert response.status_code == 200
        assert remaining(response) == BUDGET - 1
        # A fresh token of alice's is still alice: the budget is the user's, not the token's.
        assert_refused(await client.get("/api/tasks", headers=auth(alice, jti="another")))
        # So is her token in the query (as the event stream takes it).
        assert_refused(await client.get(f"/api/tasks?access_token={token_for(alice)}"))
        # The same budget on every path: the guide's, and paths no route serves.
        assert_refused(await client.get(f"/api/{alice}/tasks", headers=auth(alice)))
        assert_refused(await client.get("/api/no-such-path", headers=auth(alice)))
    # The refused request reached no handler: nothing was written.
    async with client_at(app) as unlimited:
        assert (await unlimited.get("/api/tasks", headers=auth(alice))).json() == []


async def test_without_a_valid_token_the_budget_is_the_client_address(
    database_url: str, app: FastAPI
) -> None:
    async with limited_app(database_url) as limited, client_at(limited, "10.0.0.1") as client:
        attempts = [
            {},
            {"Authorization": "Bearer not-a-jwt"},
            auth(new_user(), secret="x" * 64),
            auth(new_user(), exp=int(time.time()) - 3600),
            {"Authorization": "Basic dXNlcjpwYXNz"},
        ]
        details = []
        for left, headers in zip(range(BUDGET - 1, -1, -1), attempts, strict=True):
            response = await client.get("/api/tasks", headers=headers)
            # The route, not the limit, answers for the token, as it would without a limit.
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert remaining(response) == left
            details.append(response.json()["detail"])
        assert details[2] == "Token signature is invalid"
        assert details[3] == "Token has expired"
        assert_refused(await client.get("/api/tasks"))
        assert_refused(await client.get("/docs"))
        # A valid token from the same address counts against its user instead.
        response = await client.get("/api/tasks", headers=auth(new_user()))
        assert response.status_code == 200
        assert remaining(response) == BUDGET - 1
        async with client_at(limited, "10.0.0.2") as elsewhere:
            response = await elsewhere.get("/api/tasks")
            assert response.status_code == 401
            assert remaining(response) == BUDGET - 1


async def test_health_is_never_limited(database_url: str, app: FastAPI) -> None:
    async with limited_app(database_url) as limited, client_at(limited) as client:
        for _ in range(BUDGET):
            await client.get("/api/tasks")
        assert (await client.get("/api/tasks")).status_code == 429
        for _ in range(3 * BUDGET):
            for path in ("/health", "/health/ready"):
                response = await client.get(path)
                assert response.status_code == 200
                assert "ratelimit" not in response.headers
                assert "ratelimit-policy" not in response.headers


async def test_key_outage_is_still_the_routes_503(database_url: str, app: FastAPI) -> None:
    """A token whose signing key cannot be fetched: the limit counts it against the address,
    and the route answers 503 as it would anyway."""
    issuer = JwksIssuer()  # never started: its port refuses connections
    key = SigningKey("EdDSA", generate_private_key("EdDSA"))
    token = issuer.token(key, new_user())
    async with (
        limited_app(database_url, better_auth_url=issuer.url) as limited,
        client_at(limited, "10.0.0.3") as client,
    ):
        response = await client.get("/api/tasks", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 503, response.text
        assert "retry-after" in response.headers
        assert remaining(response) == BUDGET - 1
        assert remaining(await client.get("/api/tasks")) == BUDGET - 2


async def test_fields_are_exposed_to_browsers(database_url: str, app: FastAPI) -> None:
    async with limited_app(database_url) as limited, client_at(limited) as client:
        origin = {"Origin": "http://localhost:3000"}
        preflight = await client.options(
            "/api/tasks",
            headers=origin
            | {
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200
        assert "ratelimit" not in preflight.headers  # a preflight is not a request to count
        for _ in range(BUDGET):
            response = await client.get("/api/tasks", headers=origin | auth("cors-user"))
        exposed = {
            name.strip().lower()
            for name in response.headers["access-control-expose-headers"].split(",")
        }
        assert {"ratelimit", "ratelimit-policy", "retry-after"} <= exposed
        refused = await client.get("/api/tasks", headers=origin | auth("cors-user"))
        assert refused.status_code == 429
        assert refused.headers["access-control-allow-origin"] == "http://localhost:3000"


async def test_limit_zero_turns_limiting_off(client: httpx.AsyncClient, user: str) -> None:
    for _ in range(2 * BUDGET):
        response = await client.get("/api/tasks", headers=auth(user))
        assert response.status_code == 200
        assert "ratelimit" not in response.headers


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RATE_LIMIT", "lots"),
        ("RATE_LIMIT", "10/second;600/minute"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
    ],
)
def test_unusable_setting_stops_start_up_with_one_line(
    tmp_path: Path, variable: str, value: str
) -> None:
    env = service_environment(BETTER_AUTH_SECRET=SECRET, **{variable: value})
    result = run_cli("serve", cwd=tmp_path, env=env)
    assert result.returncode == 2
    line = one_clear_line(result.stderr)
    assert line.startswith(f"error: Invalid configuration: {variable}: "), line


# Real server processes sharing budgets through Redis.


@pytest.fixture
def key_prefix() -> Iterator[str]:
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    yield prefix
    with redis.Redis.from_url(SHARED_REDIS) as client:
        keys = client.keys(f"{prefix}:*")
        if keys:
            client.delete(*keys)


def redis_env(database_url: str, redis_url: str, key_prefix: str) -> dict[str, str]:
    return service_environment(
        DATABASE_URL=database_url,
        BETTER_AUTH_SECRET=SECRET,
        RATE_LIMIT=f"{BUDGET}/minute",
        REDIS_URL=redis_url,
        REDIS_KEY_PREFIX=key_prefix,
        WORKERS="1",  # one process per server, so each says what it has to say once
    )


@contextmanager
def two_servers(cwd: Path, env: dict[str, str]) -> Iterator[tuple[Server, Server]]:
    with running_server(cwd, env) as one, running_server(cwd, env) as two:
        yield one, two


def spend_budget_across(servers: tuple[Server, Server], user: str) -> None:
    """BUDGET requests of `user`, alternating between the servers, then one refused on each."""
    for number in range(BUDGET):
        response = httpx.get(f"{servers[number % 2].url}/api/tasks", headers=auth(user))
        assert response.status_code == 200, response.text
        assert remaining(response) == BUDGET - 1 - number
    for server in servers:
        assert_refused(httpx.get(f"{server.url}/api/tasks", headers=auth(user)))


def test_two_servers_share_one_budget_through_redis(
    database_url: str, key_prefix: str, tmp_path: Path
) -> None:
    env = redis_env(database_url, SHARED_REDIS, key_prefix)
    with two_servers(tmp_path, env) as servers:
        spend_budget_across(servers, new_user())
        with redis.Redis.from_url(SHARED_REDIS) as client:
            assert client.keys(f"{key_prefix}:*"), "the budget is not kept in Redis"


@contextmanager
def private_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A Redis server of this test's own, so stopping it disturbs nobody else's."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (apt-get install redis-server)"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        with redis.Redis(port=port) as client:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    assert time.monotonic() < deadline, "the private Redis did not start"
                    time.sleep(0.05)
        yield process
    finally:
        process.send_signal(signal.SIGCONT)  # a stopped process would not act on SIGTERM
        process.terminate()
        process.wait(timeout=10)


def test_redis_outage_fails_open_and_budgets_are_shared_again_after(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = redis_env(database_url, f"redis://127.0.0.1:{port}/0", "outage")
    with private_redis(port) as first_redis, two_servers(tmp_path, env) as servers:
        spend_budget_across(servers, new_user())

        # Hung (accepts connections, never answers): requests wait at most the short timeout,
        # once, and are served uncounted.
        first_redis.send_signal(signal.SIGSTOP)
        served_uncounted(servers, max_seconds=5)  # each waiting the timeout would take 10 s
        first_redis.send_signal(signal.SIGCONT)
        wait_until_counted(servers)
        assert [log_count(server, UNREACHABLE) for server in servers] == [1, 1]
        assert [log_count(server, BACK) for server in servers] == [1, 1]

        # Gone (connections refused).
        first_redis.terminate()
        first_redis.wait(timeout=10)
        served_uncounted(servers, max_seconds=5)
        assert [log_count(server, UNREACHABLE) for server in servers] == [2, 2]

        with private_redis(port):
            wait_until_counted(servers)
            spend_budget_across(servers, new_user())
        assert [log_count(server, BACK) for server in servers] == [2, 2]
        assert [log_count(server, UNREACHABLE) for server in servers] == [2, 2]


UNREACHABLE = "Redis is unreachable"
BACK = "Redis answers again"


def served_uncounted(servers: tuple[Server, Server], *, max_seconds: float) -> None:
    """Far more requests than the budget, all served without being counted, none slowly."""
    user = new_user()
    started = time.monotonic()
    for number in range(4 * BUDGET):
        response = httpx.get(f"{servers[number % 2].url}/api/tasks", headers=auth(user))
        assert response.status_code == 200, response.text
        assert "ratelimit" not in response.headers
    assert time.monotonic() - started < max_seconds, "requests waited on the unreachable Redis"


def wait_until_counted(servers: tuple[Server, Server]) -> None:
    """Each server notices by itself, within its probe interval, that Redis is back."""
    user = new_user()
    for server in servers:
        deadline = time.monotonic() + 10
        while "ratelimit" not in httpx.get(f"{server.url}/api/tasks", headers=auth(user)).headers:
            assert time.monotonic() < deadline, "the limit did not come back"
            time.sleep(0.1)


def log_count(server: Server, text: str) -> int:
    return server.log.read_text().count(text)
