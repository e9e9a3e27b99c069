"""Turning JWKS mode on: what starts, what refuses to start and says why, a real server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET, token_for
from tests.issuer import JwksIssuer, SigningKey, generate_private_key
from tests.server import run_cli, running_server, service_environment
from tests.test_cli import one_clear_line


def test_production_starts_with_better_auth_only(tmp_path: Path) -> None:
    env = service_environment(ENVIRONMENT="production", BETTER_AUTH_URL="https://auth.example.com")
    result = run_cli("migrate", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr


def test_production_without_any_way_to_verify_names_both(tmp_path: Path) -> None:
    result = run_cli("migrate", cwd=tmp_path, env=service_environment(ENVIRONMENT="production"))
    assert result.returncode == 2
    line = one_clear_line(result.stderr)
    assert "BETTER_AUTH_URL" in line
    assert "BETTER_AUTH_SECRET" in line


def test_token_command_says_it_needs_the_secret(tmp_path: Path) -> None:
    env = service_environment(ENVIRONMENT="production", BETTER_AUTH_URL="https://auth.example.com")
    result = run_cli("token", "alice", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    line = one_clear_line(result.stderr)
    assert "BETTER_AUTH_SECRET, which is not set" in line
    assert "/api/auth/token" in line


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"BETTER_AUTH_URL": "auth.example.com"}, "BETTER_AUTH_URL: Value error, must be an http"),
        ({"BETTER_AUTH_JWKS_URL": "file:///etc/keys"}, "BETTER_AUTH_JWKS_URL"),
        (
            {"BETTER_AUTH_JWKS_URL": "https://keys.example.com/jwks.json"},
            "set BETTER_AUTH_URL or JWT_ISSUER and JWT_AUDIENCE",
        ),
        (
            {
                "BETTER_AUTH_JWKS_URL": "https://keys.example.com/jwks.json",
                "JWT_ISSUER": "https://auth.example.com",
            },
            "set BETTER_AUTH_URL or JWT_AUDIENCE",
        ),
    ],
)
def test_unusable_jwks_settings_are_one_line(
    tmp_path: Path, settings: dict[str, str], fragment: str
) -> None:
    env = service_environment(ENVIRONMENT="production", **settings)
    result = run_cli("migrate", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert fragment in one_clear_line(result.stderr)


@pytest.mark.parametrize(
    "settings",
    [
        {"BETTER_AUTH_JWKS_URL": "https://auth.example.com/api/auth/jwks"},
        {
            "BETTER_AUTH_JWKS_URL": "https://keys.example.com/jwks.json",
            "JWT_ISSUER": "https://auth.example.com",
            "JWT_AUDIENCE": "tasks-api",
        },
    ],
)
def test_explicit_jwks_url_is_enough_when_the_issuer_is_known(
    tmp_path: Path, settings: dict[str, str]
) -> None:
    result = run_cli(
        "migrate", cwd=tmp_path, env=service_environment(ENVIRONMENT="production", **settings)
    )
    assert result.returncode == 0, result.stderr


def test_real_server_in_jwks_only_mode(tmp_path: Path) -> None:
    issuer = JwksIssuer()
    key = SigningKey("EdDSA", generate_private_key("EdDSA"))
    issuer.publish(key)
    issuer.start()
    try:
        env = service_environment(
            ENVIRONMENT="production",
            BETTER_AUTH_URL=issuer.url,
            JWKS_REFETCH_INTERVAL_SECONDS="0",  # an unknown kid is looked up at once
        )
        with running_server(tmp_path, env) as server:
            good = {"Authorization": f"Bearer {issuer.token(key, 'alice')}"}
            created = httpx.post(f"{server.url}/api/tasks", json={"title": "t"}, headers=good)
            assert created.status_code == 201, created.text
            assert created.json()["user_id"] == "alice"
            hs256 = {"Authorization": f"Bearer {token_for('alice', secret=SECRET)}"}
            refused = httpx.get(f"{server.url}/api/tasks", headers=hs256)
            assert refused.status_code == 401
            assert "expected EdDSA or ES256" in refused.json()["detail"]
            issuer.stop()
            other = issuer.token(key.with_new_kid(), "alice")
            outage = httpx.get(
                f"{server.url}/api/tasks", headers={"Authorization": f"Bearer {other}"}
            )
            assert outage.status_code == 503
            assert outage.headers["retry-after"].isdigit()
        assert "JWKS fetch from" in server.log.read_text()
    finally:
        issuer.stop()
