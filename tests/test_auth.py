"""Authentication: every failure is a 401 that says what was wrong; the user comes from `sub`."""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from jwt.algorithms import get_default_algorithms

from tests.conftest import SECRET, auth, client_for, make_settings, new_user, token_for
from todo_api.http.app import create_app


def unsigned_token(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def signed_token(header: Any, claims: Any, *, key: Any = SECRET, algorithm: str = "HS256") -> str:
    """A correctly signed token whose header and claims are any JSON value (non-finite numbers
    and lone surrogates included) or raw bytes, so only the checks of header and claims can
    refuse it."""

    def part(value: Any) -> bytes:
        data = value if isinstance(value, bytes) else json.dumps(value).encode()
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = part(header) + b"." + part(claims)
    signer = get_default_algorithms()[algorithm]
    signature = signer.sign(signing_input, signer.prepare_key(key))
    return f"{signing_input.decode()}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def fresh_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": new_user(), "iat": now, "exp": now + 600} | changes


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def expect_401(response, detail_fragment: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert detail_fragment.lower() in detail.lower(), detail
    assert "Traceback" not in response.text


ENDPOINTS = [
    ("GET", "/api/tasks"),
    ("POST", "/api/tasks"),
    ("GET", "/api/tasks/1"),
    ("PUT", "/api/tasks/1"),
    ("PATCH", "/api/tasks/1/complete"),
    ("DELETE", "/api/tasks/1"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_every_api_endpoint_needs_a_token(
    client: AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json={"title": "x"})
    expect_401(response, "missing authorization header")


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        ("Basic dXNlcjpwYXNz", "malformed authorization header"),
        ("Bearer", "malformed authorization header"),
        ("Bearer ", "malformed authorization header"),
        ("Token abc", "malformed authorization header"),
        ("Bearer not-a-jwt", "malformed"),
        ("Bearer a.b.c", "malformed"),
        ("Bearer ☃".encode(), "malformed"),
    ],
)
async def test_malformed_authorization(
    client: AsyncClient, header: str | bytes, fragment: str
) -> None:
    response = await client.get("/api/tasks", headers={"Authorization": header})
    expect_401(response, fragment)


async def test_lowercase_bearer_scheme_is_accepted(client: AsyncClient, user: str) -> None:
    response = await client.get(
        "/api/tasks", headers={"Authorization": f"bearer {token_for(user)}"}
    )
    assert response.status_code == 200


async def test_wrong_secret(client: AsyncClient, user: str) -> None:
    token = token_for(user, secret="another-secret-that-is-equally-long-0123456789abcdefghijklmnop")
    expect_401(
        await client.get("/api/tasks", headers={"Authorization": f"Bearer {token}"}), "signature"
    )


async def test_tampered_payload(client: AsyncClient, user: str) -> None:
    header, _, signature = token_for(user).split(".")
    forged = jwt.encode({"sub": "admin", "exp": int(time.time()) + 60}, "x" * 40).split(".")[1]
    response = await client.get(
        "/api/tasks", headers={"Authorization": f"Bearer {header}.{forged}.{signature}"}
    )
    expect_401(response, "signature")


async def test_expired_token(client: AsyncClient, user: str) -> None:
    now = int(time.time())
    response = await client.get("/api/tasks", headers=auth(user, iat=now - 7200, exp=now - 3600))
    expect_401(response, "expired")


async def test_expiry_within_leeway_is_accepted(client: AsyncClient, user: str) -> None:
    response = await client.get("/api/tasks", headers=auth(user, exp=int(time.time()) - 5))
    assert response.status_code == 200


async def test_token_without_exp(client: AsyncClient, user: str) -> None:
    token = jwt.encode({"sub": user}, SECRET, "HS256")
    response = await client.get("/api/tasks", headers={"Authorization": f"Bearer {token}"})
    expect_401(response, '"exp"')


async def test_token_not_valid_yet(client: AsyncClient, user: str) -> None:
    response = await client.get("/api/tasks", headers=auth(user, nbf=int(time.time()) + 3600))
    expect_401(response, "not valid yet")


async def test_token_issued_in_the_future(client: AsyncClient, user: str) -> None:
    response = await client.get("/api/tasks", headers=auth(user, iat=int(time.time()) + 3600))
    expect_401(response, "not valid yet")


async def test_alg_none_is_refused(client: AsyncClient, user: str) -> None:
    token = unsigned_token({"sub": user, "exp": int(time.time()) + 600})
    response = await client.get("/api/tasks", headers={"Authorization": f"Bearer {token}"})
    expect_401(response, "alg: none")


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
async def test_other_hmac_algorithms_are_refused(
    client: AsyncClient, user: str, algorithm: str
) -> None:
    token = token_for(user, algorithm=algorithm)
    response = await client.get("/api/tasks", headers={"Authorization": f"Bearer {token}"})
    expect_401(response, f'"{algorithm}" is not accepted')


@pytest.mark.parametrize(
    "subject",
    [
        None,
        "",
        "   ",
        42,
        True,
        ["a"],
        {"id": "a"},
        "u" * 256,
        "user\u0000",
        "user\ud800",
        "\udfff",
    ],
)
async def test_missing_or_bad_subject(client: AsyncClient, subject: object) -> None:
    response = await client.get("/api/tasks", headers=auth(subject))  # type: ignore[arg-type]
    expect_401(response, "sub")


async def test_longest_subject_is_accepted(client: AsyncClient) -> None:
    user = "u" * 255
    response = await client.post("/api/tasks", json={"title": "x"}, headers=auth(user))
    assert response.status_code == 201
    assert response.json()["user_id"] == user


async def test_user_id_comes_only_from_the_token(client: AsyncClient, user: str) -> None:
    response = await client.post(
        "/api/tasks?user_id=mallory",
        json={"title": "mine", "user_id": "mallory"},
        headers=auth(user) | {"X-User-Id": "mallory"},
    )
    assert response.json()["user_id"] == user
    listed = await client.get("/api/tasks?user_id=mallory", headers=auth(user))
    assert [task["user_id"] for task in listed.json()] == [user]


async def test_auth_failure_comes_before_validation(client: AsyncClient) -> None:
    response = await client.post("/api/tasks", json={"title": ""})
    assert response.status_code == 401
    response = await client.get("/api/tasks/abc")
    assert response.status_code in (401, 422)


@pytest.fixture
async def strict_app(database_url: str, app: FastAPI) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        database_url, jwt_issuer="https://auth.example.com", jwt_audience="https://api.example.com"
    )
    application = create_app(settings, engine=app.state.services.engine)
    yield application
    await application.state.services.aclose(dispose_engine=False)


async def test_issuer_and_audience_are_checked_when_configured(strict_app: FastAPI) -> None:
    user = new_user()
    good = {"iss": "https://auth.example.com", "aud": "https://api.example.com"}
    async with client_for(strict_app) as client:
        assert (await client.get("/api/tasks", headers=auth(user, **good))).status_code == 200
        wrong_iss = auth(user, **(good | {"iss": "https://evil.example.com"}))
        expect_401(await client.get("/api/tasks", headers=wrong_iss), "issuer")
        wrong_aud = auth(user, **(good | {"aud": "https://other.example.com"}))
        expect_401(await client.get("/api/tasks", headers=wrong_aud), "audience")
        no_iss = auth(user, aud=good["aud"])
        expect_401(await client.get("/api/tasks", headers=no_iss), '"iss"')


async def test_audience_in_token_is_fine_when_none_is_configured(
    client: AsyncClient, user: str
) -> None:
    response = await client.get("/api/tasks", headers=auth(user, aud="http://localhost:3000"))
    assert response.status_code == 200


async def test_signed_token_helper_makes_tokens_the_service_accepts(client: AsyncClient) -> None:
    token = signed_token({"alg": "HS256", "typ": "JWT"}, fresh_claims())
    assert (await client.get("/api/tasks", headers=bearer(token))).status_code == 200


@pytest.mark.parametrize(
    "crit", [["x-unknown"], ["b64"], ["exp"], [], "x-unknown", [1], None, {"x-unknown": True}]
)
async def test_critical_header_extension_is_refused(client: AsyncClient, crit: Any) -> None:
    header = {"alg": "HS256", "crit": crit, "x-unknown": True, "b64": True}
    response = await client.get("/api/tasks", headers=bearer(signed_token(header, fresh_claims())))
    expect_401(response, "critical extensions (crit)")


@pytest.mark.parametrize("header", [[], ["HS256"], "HS256", None, 1, 1.5, True])
async def test_header_that_is_not_an_object_is_refused(client: AsyncClient, header: Any) -> None:
    response = await client.get("/api/tasks", headers=bearer(signed_token(header, fresh_claims())))
    expect_401(response, "header is not a JSON object")


@pytest.mark.parametrize("header", [{}, {"alg": 256}, {"alg": ["HS256"]}, {"alg": None}])
async def test_algorithm_that_is_missing_or_not_a_string_is_refused(
    client: AsyncClient, header: dict[str, Any]
) -> None:
    response = await client.get("/api/tasks", headers=bearer(signed_token(header, fresh_claims())))
    expect_401(response, '"alg" must be a string')


@pytest.mark.parametrize("kid", [7, None, True, ["k"], {"k": "v"}])
async def test_key_id_that_is_not_a_string_is_refused(client: AsyncClient, kid: Any) -> None:
    header = {"alg": "HS256", "kid": kid}
    response = await client.get("/api/tasks", headers=bearer(signed_token(header, fresh_claims())))
    expect_401(response, '("kid") must be a string')


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ([], "payload is not a JSON object"),
        ("sub", "payload is not a JSON object"),
        (1, "payload is not a JSON object"),
        (None, "payload is not a JSON object"),
        (b"{not json", "payload is not base64url-encoded JSON"),
        (b"\xff\xfe", "payload is not base64url-encoded JSON"),
        (b'{"sub": "u", "exp": 1' + b"0" * 5000 + b"}", "payload is not base64url-encoded JSON"),
        (b"[" * 10_000 + b"]" * 10_000, "payload is not base64url-encoded JSON"),
    ],
)
async def test_payload_that_is_not_a_json_object_is_refused(
    client: AsyncClient, payload: Any, fragment: str
) -> None:
    token = signed_token({"alg": "HS256"}, payload)
    expect_401(await client.get("/api/tasks", headers=bearer(token)), fragment)


@pytest.mark.parametrize(
    "value",
    [
        *["9999999999", "1", "", True, False, None, [1], {"t": 1}, math.inf, -math.inf, math.nan],
        pytest.param(10**400, id="10**400"),
    ],
)
@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_numeric_date_that_is_not_a_json_number_is_refused(
    client: AsyncClient, claim: str, value: Any
) -> None:
    token = signed_token({"alg": "HS256"}, fresh_claims(**{claim: value}))
    expect_401(await client.get("/api/tasks", headers=bearer(token)), f'claim "{claim}" must be')


async def test_fractional_numeric_dates_are_accepted(client: AsyncClient) -> None:
    now = time.time()
    claims = fresh_claims(iat=now - 0.5, nbf=now - 0.25, exp=now + 600.5)
    token = signed_token({"alg": "HS256"}, claims)
    assert (await client.get("/api/tasks", headers=bearer(token))).status_code == 200
