#!/usr/bin/env python3
"""What the rate limit costs per request: the service's own app, called in-process.

    .venv/bin/python bench/limiter_cost.py                  # 20,000 requests per setting
    .venv/bin/python bench/limiter_cost.py --redis-url redis://127.0.0.1:6379/11

Each request goes through the whole middleware stack of `create_app` to a path that no route
serves (a 404 that touches no database), as one of 100 users with an HS256 token, so the only
work that differs between the settings is the limit's: naming the caller (a lookup in the
verified-token cache), counting the request, and adding the RateLimit fields. Measured three
ways: RATE_LIMIT=0, RATE_LIMIT=600/minute in memory, and the same in Redis (REDIS_URL), each
the median of `--repeat` runs. It reports this process's CPU time per request (what a server
worker spends), the wall time (with Redis, the round trips), and Redis's own CPU time per
request (from INFO). Nobody exceeds the budget: 20,000 requests over 100 users is 200 each.
Between requests the event loop runs once, as a server's does, so that the limit's background
work (the in-memory storage expires old entries in a task of its own) is counted too.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from fastapi import FastAPI

from todo_api.auth import mint_token
from todo_api.http.app import create_app
from todo_api.settings import Settings

SECRET = "limiter-cost-secret-0123456789abcdef-0123456789abcdef"  # noqa: S105 (signs the benchmark's own tokens)
PATH = "/api/limiter-cost-no-such-path"


@dataclass
class Measurement:
    cpu_us: float
    wall_us: float
    redis_cpu_us: float


def scope_for(token: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def call(app: FastAPI, scope: dict[str, Any]) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope), receive, send)
    return status


def redis_cpu_seconds(url: str | None) -> float:
    if url is None:
        return 0.0
    with redis.Redis.from_url(url) as client:
        info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def measure(settings: Settings, requests: int, users: int) -> Measurement:
    app = create_app(settings)
    scopes = [scope_for(mint_token(SECRET, f"cost-user-{n}")) for n in range(users)]
    try:
        for scope in scopes:  # warm: tokens verified once, the Redis connection open
            await call(app, scope)
        statuses: Counter[int] = Counter()
        redis_before = redis_cpu_seconds(settings.redis_url)
        cpu, wall = time.process_time(), time.perf_counter()
        for number in range(requests):
            statuses[await call(app, scopes[number % users])] += 1
            await asyncio.sleep(0)  # let background tasks run, as between a server's requests
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        redis_cpu = redis_cpu_seconds(settings.redis_url) - redis_before
    finally:
        await app.state.services.aclose()
    assert statuses == {404: requests}, statuses  # none refused, none failed
    return Measurement(cpu / requests * 1e6, wall / requests * 1e6, redis_cpu / requests * 1e6)


async def main(args: argparse.Namespace) -> None:
    prefix = f"limiter-cost-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as workdir:
        base = Settings(
            database_url=f"sqlite+aiosqlite:///{Path(workdir) / 'unused.db'}",
            better_auth_secret=SECRET,
            redis_key_prefix=prefix,
            _env_file=None,  # type: ignore[call-arg]
        )
        settings = {
            "RATE_LIMIT=0": base.model_copy(update={"rate_limit": "0"}),
            "600/minute, memory": base,
            "600/minute, Redis": base.model_copy(update={"redis_url": args.redis_url}),
        }
        results: dict[str, Measurement] = {}
        try:
            for label, config in settings.items():
                runs = []
                for _ in range(args.repeat):
                    runs.append(await measure(config, args.requests, args.users))
                    await _clear(args.redis_url, prefix)  # each run starts with full budgets
                results[label] = Measurement(
                    statistics.median(run.cpu_us for run in runs),
                    statistics.median(run.wall_us for run in runs),
                    statistics.median(run.redis_cpu_us for run in runs),
                )
        finally:
            await _clear(args.redis_url, prefix)
    print(f"{args.requests} requests x {args.repeat} runs per setting, {args.users} users")
    print(f"{'setting':<22}{'CPU us/req':>12}{'wall us/req':>13}{'Redis CPU us/req':>18}")
    for label, result in results.items():
        print(
            f"{label:<22}{result.cpu_us:>12.1f}{result.wall_us:>13.1f}{result.redis_cpu_us:>18.1f}"
        )
    off = results["RATE_LIMIT=0"]
    for label in ("600/minute, memory", "600/minute, Redis"):
        result = results[label]
        print(
            f"limit cost, {label.split(', ')[1]}: +{result.cpu_us - off.cpu_us:.1f} us CPU, "
            f"+{result.wall_us - off.wall_us:.1f} us wall per request"
        )


async def _clear(redis_url: str, prefix: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        keys = client.keys(f"{prefix}:*")
        if keys:
            client.delete(*keys)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per setting (median)")
    parser.add_argument("--users", type=int, default=100, help="distinct callers")
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/11", help="Redis for the shared setting"
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
