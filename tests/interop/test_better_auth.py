"""Tokens minted by an unmodified Better Auth (from npm, locked) are accepted end to end.

One Node process runs a Better Auth server with its JWT plugin per signing algorithm, on
loopback, with its memory store. Users sign up through Better Auth's own HTTP API, get their
JWT the way a frontend does, and use this service with it. Needs Node.js 20+ and npm: missing,
the test is skipped locally and fails in CI.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import select
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from tests.conftest import client_for, make_settings
from todo_api.http.app import create_app

HERE = Path(__file__).resolve().parent
ALGORITHMS = ("EdDSA", "ES256", "ES512", "RS256", "PS256")
ROTATING = "EdDSA:rotating"  # Better Auth's rotationInterval of 1 second
INSTALL_STAMP = HERE / "node_modules" / ".installed-from-lock"


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed; the Better Auth interop test needs Node.js 20+"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def npm_install(npm: str) -> None:
    """`npm ci` from the committed lockfile, only when node_modules is missing or stale."""
    wanted = hashlib.sha256((HERE / "package-lock.json").read_bytes()).hexdigest()
    if INSTALL_STAMP.exists() and INSTALL_STAMP.read_text() == wanted:
        return
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
        cwd=HERE,
        check=True,
        timeout=300,
        capture_output=True,
    )
    INSTALL_STAMP.write_text(wanted)


@pytest.fixture(scope="module")
def better_auth() -> Iterator[dict[str, str]]:
    """Base URL of a running Better Auth per algorithm (and one rotating its key)."""
    node, npm = require("node"), require("npm")
    npm_install(npm)
    process = subprocess.Popen(
        [node, "server.mjs", *ALGORITHMS, ROTATING],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"BETTER_AUTH_TELEMETRY": "0", "NODE_ENV": "test"},
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        line = process.stdout.readline() if ready else ""
        if not line:
            process.kill()
            _, errors = process.communicate(timeout=10)
            raise RuntimeError(f"Better Auth did not start:\n{errors}")
        yield json.loads(line)
    finally:
        process.terminate()
        process.wait(timeout=10)


@asynccontextmanager
async def service_trusting(
    base_url: str, app: FastAPI, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """This service, knowing Better Auth only by its URL: JWKS only, no shared secret."""
    settings = make_settings(
        database_url,
        better_auth_secret=None,
        better_auth_url=base_url,
        jwks_refetch_interval_seconds=0.5,
    )
    application = create_app(settings, engine=app.state.services.engine)
    try:
        async with client_for(application) as client:
            yield client
    finally:
        await application.state.services.aclose(dispose_engine=False)


class FrontendUser:
    """A browser session with Better Auth: signs up, keeps the cookie, asks for its JWT."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30)
        self.user_id = ""

    async def sign_up(self) -> None:
        email = f"{uuid.uuid4().hex[:12]}@example.com"
        response = await self.http.post(
            "/api/auth/sign-up/email",
            json={"email": email, "password": "correct horse battery", "name": "Test User"},
        )
        assert response.status_code == 200, response.text
        self.user_id = response.json()["user"]["id"]

    async def token(self) -> str:
        """What `authClient.token()` does: GET /api/auth/token with the session cookie."""
        response = await self.http.get("/api/auth/token")
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    async def token_from_session_header(self) -> str:
        """The other way: any session read returns the JWT in the `set-auth-jwt` header."""
        response = await self.http.get("/api/auth/get-session")
        assert response.status_code == 200, response.text
        return response.headers["set-auth-jwt"]

    async def aclose(self) -> None:
        await self.http.aclose()


@asynccontextmanager
async def frontend_users(base_url: str, count: int) -> AsyncIterator[list[FrontendUser]]:
    users = [FrontendUser(base_url) for _ in range(count)]
    try:
        await asyncio.gather(*(user.sign_up() for user in users))
        yield users
    finally:
        for user in users:
            await user.aclose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_better_auth_tokens_work_end_to_end(
    better_auth: dict[str, str], app: FastAPI, database_url: str, algorithm: str
) -> None:
    base_url = better_auth[algorithm]
    async with (
        frontend_users(base_url, 2) as (alice, bob),
        service_trusting(base_url, app, database_url) as service,
    ):
        alice_token, bob_token = await alice.token(), await bob.token_from_session_header()
        header = jwt.get_unverified_header(alice_token)
        assert header["alg"] == algorithm
        claims: dict[str, Any] = jwt.decode(alice_token, options={"verify_signature": False})
        assert claims["iss"] == claims["aud"] == base_url

        created = await service.post(
            "/api/tasks", json={"title": f"{algorithm} task"}, headers=bearer(alice_token)
        )
        assert created.status_code == 201, created.text
        task = created.json()
        assert task["user_id"] == alice.user_id
        listed = await service.get("/api/tasks", headers=bearer(alice_token))
        assert [t["id"] for t in listed.json()] == [task["id"]]

        # Bob, signed in to the same Better Auth, sees and reaches none of it.
        assert (await service.get("/api/tasks", headers=bearer(bob_token))).json() == []
        path = f"/api/tasks/{task['id']}"
        assert (await service.get(path, headers=bearer(bob_token))).status_code == 404
        assert (await service.delete(path, headers=bearer(bob_token))).status_code == 404
        bobs = await service.post("/api/tasks", json={"title": "b"}, headers=bearer(bob_token))
        assert bobs.json()["user_id"] == bob.user_id
        again = await service.get("/api/tasks", headers=bearer(alice_token))
        assert [t["id"] for t in again.json()] == [task["id"]]

        # Bob's claims under Alice's signature: refused.
        head, _, signature = alice_token.split(".")
        forged = f"{head}.{bob_token.split('.')[1]}.{signature}"
        refused = await service.get("/api/tasks", headers=bearer(forged))
        assert refused.status_code == 401, refused.text
        assert "signature" in refused.json()["detail"]


async def test_better_auth_key_rotation_needs_no_restart(
    better_auth: dict[str, str], app: FastAPI, database_url: str
) -> None:
    base_url = better_auth[ROTATING]
    async with (
        frontend_users(base_url, 1) as (user,),
        service_trusting(base_url, app, database_url) as service,
    ):
        before = await user.token()
        assert (await service.get("/api/tasks", headers=bearer(before))).status_code == 200
        await asyncio.sleep(1.2)  # past Better Auth's rotation interval: the next JWT has a new key
        after = await user.token()
        old_kid = jwt.get_unverified_header(before)["kid"]
        assert jwt.get_unverified_header(after)["kid"] != old_kid
        response = await service.get("/api/tasks", headers=bearer(after))
        assert response.status_code == 200, response.text
    # The retired key stays in Better Auth's JWKS for its grace period, so do its tokens, also
    # for a service that never saw them (nothing comes from this one's caches).
    async with service_trusting(base_url, app, database_url) as fresh:
        assert (await fresh.get("/api/tasks", headers=bearer(before))).status_code == 200
