"""Tokens signed with the issuer's asymmetric keys, checked against its JWKS fetched over HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import jwt
import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.conftest import SECRET, auth, client_for, make_settings, new_user
from tests.issuer import ALGORITHMS, JwksIssuer, SigningKey, generate_private_key
from tests.test_auth import expect_401, signed_token, unsigned_token
from todo_api.http.app import create_app

Serve = Callable[..., AbstractAsyncContextManager[AsyncClient]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def private_keys() -> dict[str, Any]:
    return {algorithm: generate_private_key(algorithm) for algorithm in ALGORITHMS}


@pytest.fixture
def keys(private_keys: dict[str, Any]) -> dict[str, SigningKey]:
    """One key per algorithm, each under a key id no other test uses."""
    return {algorithm: SigningKey(algorithm, key) for algorithm, key in private_keys.items()}


@pytest.fixture
def issuer(keys: dict[str, SigningKey]) -> Iterator[JwksIssuer]:
    stub = JwksIssuer()
    stub.publish(*keys.values())
    stub.start()
    yield stub
    stub.stop()


@pytest.fixture
def serve(app: FastAPI, database_url: str) -> Serve:
    """A client of a fresh app (empty key and token caches) trusting `issuer`."""

    @asynccontextmanager
    async def serve(issuer: JwksIssuer, **settings: Any) -> AsyncIterator[AsyncClient]:
        values = {
            "better_auth_url": issuer.url,
            "jwks_refetch_interval_seconds": 0,
            "jwks_fetch_timeout_seconds": 2,
        }
        application = create_app(
            make_settings(database_url, **(values | settings)), engine=app.state.services.engine
        )
        try:
            async with client_for(application) as client:
                yield client
        finally:
            await application.state.services.aclose(dispose_engine=False)

    return serve


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_each_algorithm_is_accepted(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey], algorithm: str
) -> None:
    user = new_user()
    headers = bearer(issuer.token(keys[algorithm], user))
    async with serve(issuer) as client:
        created = await client.post("/api/tasks", json={"title": algorithm}, headers=headers)
        assert created.status_code == 201, created.text
        assert created.json()["user_id"] == user
        listed = await client.get("/api/tasks", headers=headers)
        assert [task["title"] for task in listed.json()] == [algorithm]


async def test_both_modes_together(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey]
) -> None:
    user = new_user()
    async with serve(issuer) as client:
        jwks_token = bearer(issuer.token(keys["EdDSA"], user))
        assert (await client.post("/api/tasks", json={"title": "a"}, headers=jwks_token)).is_success
        listed = await client.get("/api/tasks", headers=auth(user))  # HS256, same user
        assert [task["title"] for task in listed.json()] == ["a"]


async def test_keys_are_fetched_once_for_concurrent_requests(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey]
) -> None:
    issuer.delay_seconds = 0.3  # every request arrives while the first fetch is under way
    async with serve(issuer) as client:
        tokens = [issuer.token(keys[a], new_user()) for a in ALGORITHMS for _ in range(4)]
        responses = await asyncio.gather(
            *(client.get("/api/tasks", headers=bearer(token)) for token in tokens)
        )
        assert [r.status_code for r in responses] == [200] * len(tokens)
        assert issuer.fetches == 1
        await client.get("/api/tasks", headers=bearer(issuer.token(keys["ES256"], new_user())))
        assert issuer.fetches == 1


async def test_rotation_is_picked_up_without_a_restart(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey]
) -> None:
    old = keys["EdDSA"]
    new = SigningKey("EdDSA", generate_private_key("EdDSA"))
    user = new_user()
    async with serve(issuer, jwks_refetch_interval_seconds=0.2) as client:
        assert (await client.get("/api/tasks", headers=bearer(issuer.token(old, user)))).is_success
        issuer.publish(new)  # the old key is withdrawn at the same time
        await asyncio.sleep(0.25)
        response = await client.get("/api/tasks", headers=bearer(issuer.token(new, user)))
        assert response.status_code == 200, response.text
        assert issuer.fetches == 2
        withdrawn = await client.get("/api/tasks", headers=bearer(issuer.token(old, user, jti="x")))
        expect_401(withdrawn, "is not in the issuer's JWKS")


async def test_old_keys_are_refreshed_in_the_background(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey]
) -> None:
    user = new_user()
    withdrawn = keys["EdDSA"]
    async with serve(issuer, jwks_max_age_seconds=0.3, jwks_refetch_interval_seconds=0.3) as client:
        first = await client.get("/api/tasks", headers=bearer(issuer.token(withdrawn, user)))
        assert first.status_code == 200
        issuer.publish(keys["ES256"])
        await asyncio.sleep(0.35)
        # The set is old: this request starts a refresh but is served with the cached key.
        stale = bearer(issuer.token(withdrawn, user, jti="stale"))
        assert (await client.get("/api/tasks", headers=stale)).status_code == 200
        for attempt in range(50):
            fresh = bearer(issuer.token(withdrawn, user, jti=str(attempt)))
            response = await client.get("/api/tasks", headers=fresh)
            if response.status_code == 401:
                break
            await asyncio.sleep(0.02)
        expect_401(response, "is not in the issuer's JWKS")
        assert issuer.fetches == 2


async def test_unknown_kid_refetches_at_most_once_per_interval(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey]
) -> None:
    user = new_user()
    async with serve(issuer, jwks_refetch_interval_seconds=0.5) as client:
        known = await client.get("/api/tasks", headers=bearer(issuer.token(keys["ES256"], user)))
        assert known.status_code == 200
        for _ in range(10):
            made_up = keys["ES256"].with_new_kid()
            response = await client.get("/api/tasks", headers=bearer(issuer.token(made_up, user)))
            expect_401(response, f'kid) "{made_up.kid}" is not in the issuer\'s JWKS')
        assert issuer.fetches == 1
        await asyncio.sleep(0.5)
        response = await client.get(
            "/api/tasks", headers=bearer(issuer.token(keys["ES256"].with_new_kid(), user))
        )
        expect_401(response, "is not in the issuer's JWKS")
        assert issuer.fetches == 2


async def test_unreachable_issuer_keeps_cached_keys_and_recovers(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey]
) -> None:
    user = new_user()
    late = SigningKey("ES512", generate_private_key("ES512"))
    async with serve(issuer, jwks_refetch_interval_seconds=0.5) as client:
        first = await client.get("/api/tasks", headers=bearer(issuer.token(keys["RS256"], user)))
        assert first.status_code == 200
        issuer.stop()
        issuer.publish(*keys.values(), late)
        # A new token (so not served from the token cache) under a key fetched before: fine.
        cached = bearer(issuer.token(keys["RS256"], user, jti="second"))
        assert (await client.get("/api/tasks", headers=cached)).status_code == 200
        await asyncio.sleep(0.5)
        # A key that cannot be fetched: the token may be valid, so 503, not 401.
        outage = await client.get("/api/tasks", headers=bearer(issuer.token(late, user)))
        assert outage.status_code == 503, outage.text
        assert "signing keys (JWKS) could not be fetched" in outage.json()["detail"]
        assert 1 <= int(outage.headers["retry-after"]) <= 1
        # Within the interval the issuer is not asked again: still 503, no new attempt.
        again = await client.get("/api/tasks", headers=bearer(issuer.token(late, user)))
        assert again.status_code == 503
        issuer.start()
        await asyncio.sleep(0.5)
        recovered = await client.get("/api/tasks", headers=bearer(issuer.token(late, user)))
        assert recovered.status_code == 200, recovered.text
        assert (await client.get("/api/tasks", headers=cached)).status_code == 200


async def test_issuer_down_from_the_start_then_up(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey]
) -> None:
    issuer.stop()
    headers = bearer(issuer.token(keys["EdDSA"], new_user()))
    async with serve(issuer) as client:
        response = await client.get("/api/tasks", headers=headers)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert (await client.get("/api/tasks", headers=auth(new_user()))).status_code == 200
        issuer.start()
        assert (await client.get("/api/tasks", headers=headers)).status_code == 200


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b"Internal Server Error"),
        (200, b"<html>Sign in</html>"),
        (200, b"[]"),
        (200, b'{"keys": []}'),
        (200, b'{"keys": [{"kty": "XYZ", "kid": "a"}, {"kty": "OKP", "crv": "Ed25519"}]}'),
    ],
)
async def test_unusable_jwks_answer_is_a_503(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey], status: int, body: bytes
) -> None:
    issuer.status, issuer.raw_body = status, body
    async with serve(issuer) as client:
        response = await client.get("/api/tasks", headers=bearer(issuer.token(keys["EdDSA"], "u")))
        assert response.status_code == 503, response.text
        assert "JWKS" in response.json()["detail"]


async def test_slow_issuer_times_out_without_blocking_other_requests(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey]
) -> None:
    issuer.delay_seconds = 3.0
    headers = bearer(issuer.token(keys["PS256"], new_user()))
    async with serve(issuer, jwks_fetch_timeout_seconds=2.0) as client:
        started = time.monotonic()
        waiting = asyncio.create_task(client.get("/api/tasks", headers=headers))
        await asyncio.sleep(0.1)
        other = await client.get("/api/tasks", headers=auth(new_user()))
        assert other.status_code == 200
        assert time.monotonic() - started < 1.5  # served while the fetch was hanging
        response = await waiting
        assert response.status_code == 503
        assert time.monotonic() - started < 2.8  # the fetch's timeout, not the issuer's delay


# --- Confusion: each kind of token is checked only with its own kind of key.


def hs256_signed_with(key_bytes: bytes, claims: dict[str, Any], kid: str) -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = part(json.dumps(claims).encode())
    mac = hmac.new(key_bytes, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{part(mac)}"


@pytest.mark.parametrize("with_secret", [True, False])
async def test_hs256_signed_with_the_public_key_is_refused(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey], with_secret: bool
) -> None:
    key = keys["RS256"]
    claims = {"sub": new_user(), "exp": int(time.time()) + 600, "iss": issuer.url}
    claims["aud"] = issuer.url
    secret = SECRET if with_secret else None
    async with serve(issuer, better_auth_secret=secret) as client:
        for material in (key.public_pem(), json.dumps(key.jwk()).encode()):
            forged = hs256_signed_with(material, claims, key.kid)
            response = await client.get("/api/tasks", headers=bearer(forged))
            if with_secret:
                expect_401(response, "signature is invalid")
            else:
                expect_401(response, 'algorithm "HS256" is not accepted')
    assert issuer.fetches == 0  # an HS256 token never reaches for the JWKS


async def test_symmetric_key_in_the_jwks_is_never_used(serve: Serve, issuer: JwksIssuer) -> None:
    shared = b"k" * 48
    oct_key = {"kty": "oct", "kid": "shared", "k": base64.urlsafe_b64encode(shared).decode()}
    issuer.extra_entries = [oct_key | {"alg": "HS256"}]
    claims = {"sub": new_user(), "exp": int(time.time()) + 600, "iss": issuer.url}
    forged = hs256_signed_with(shared, claims | {"aud": issuer.url}, "shared")
    async with serve(issuer, better_auth_secret=None) as client:
        expect_401(await client.get("/api/tasks", headers=bearer(forged)), "not accepted")


async def test_asymmetric_token_is_refused_without_a_jwks(
    client: AsyncClient, issuer: JwksIssuer, keys: dict[str, SigningKey]
) -> None:
    token = issuer.token(keys["EdDSA"], new_user())
    response = await client.get("/api/tasks", headers=bearer(token))
    expect_401(response, 'algorithm "EdDSA" is not accepted; expected HS256')
    assert issuer.fetches == 0


@pytest.mark.parametrize("case", ["ed25519 key", "rsa key for PS256", "P-256 key"])
async def test_key_must_fit_the_token_algorithm(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey], case: str
) -> None:
    """The token names a real kid, but that key is not for the token's algorithm."""
    if case == "ed25519 key":
        published, signer, algorithm = keys["EdDSA"], keys["ES256"], "ES256"
    elif case == "rsa key for PS256":  # the very key that signed, used with another algorithm
        published, signer, algorithm = keys["PS256"], keys["PS256"], "RS256"
    else:  # a JWKS entry without "alg": the curve decides
        published = keys["ES256"].with_new_kid(declare_alg=False)
        signer, algorithm = keys["ES512"], "ES512"
    issuer.publish(published)
    now = int(time.time())
    claims = {"sub": new_user(), "exp": now + 600, "iss": issuer.url, "aud": issuer.url}
    token = signer.with_new_kid(kid=published.kid).sign(claims, algorithm=algorithm)
    async with serve(issuer) as client:
        response = await client.get("/api/tasks", headers=bearer(token))
        expect_401(response, f'algorithm "{algorithm}" does not match its key')


async def test_key_marked_for_encryption_is_not_a_signing_key(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey]
) -> None:
    encryption = keys["RS256"].with_new_kid(use="enc")
    issuer.publish(keys["EdDSA"], encryption)
    async with serve(issuer) as client:
        response = await client.get("/api/tasks", headers=bearer(issuer.token(encryption, "u")))
        expect_401(response, "is not in the issuer's JWKS")


async def test_unsigned_token_with_a_kid_is_refused(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey]
) -> None:
    token = unsigned_token({"sub": "u", "exp": int(time.time()) + 60, "kid": keys["EdDSA"].kid})
    async with serve(issuer) as client:
        expect_401(await client.get("/api/tasks", headers=bearer(token)), "alg: none")


async def test_token_without_kid(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey]
) -> None:
    now = int(time.time())
    claims = {"sub": "u", "exp": now + 60, "iss": issuer.url, "aud": issuer.url}
    token = jwt.encode(claims, keys["ES256"].private_key, "ES256")
    async with serve(issuer) as client:
        expect_401(await client.get("/api/tasks", headers=bearer(token)), '"kid"')


@pytest.mark.parametrize(
    ("header", "claims", "fragment"),
    [
        ({"crit": ["x-unknown"], "x-unknown": True}, {}, "critical extensions (crit)"),
        ({"kid": 7}, {}, '("kid") must be a string'),
        ({"kid": ""}, {}, '"kid"'),
        ({"alg": ["EdDSA"]}, {}, '"alg" must be a string'),
        ({}, {"exp": "9999999999"}, 'claim "exp" must be'),
        ({}, {"nbf": True}, 'claim "nbf" must be'),
        ({}, {"iat": 1e999}, 'claim "iat" must be'),
        ({}, {"sub": 42}, "subject (sub)"),
        ({}, {"sub": "user\ud800"}, "subject (sub)"),
        ({}, {"iss": ["x"]}, "issuer"),
        ({}, {"aud": {"x": 1}}, "aud"),
    ],
)
async def test_header_and_claim_types_are_checked(
    serve: Serve,
    issuer: JwksIssuer,
    keys: dict[str, SigningKey],
    header: dict[str, Any],
    claims: dict[str, Any],
    fragment: str,
) -> None:
    key = keys["EdDSA"]
    now = int(time.time())
    payload = {"sub": new_user(), "exp": now + 600, "iss": issuer.url, "aud": issuer.url} | claims
    token = signed_token(
        {"alg": "EdDSA", "kid": key.kid} | header, payload, key=key.private_key, algorithm="EdDSA"
    )
    async with serve(issuer) as client:
        expect_401(await client.get("/api/tasks", headers=bearer(token)), fragment)


@pytest.mark.parametrize(
    ("claims", "fragment"),
    [
        ({"iss": "https://evil.example.com"}, "issuer (iss)"),
        ({"aud": "https://other.example.com"}, "audience (aud)"),
        ({"iss": None}, '"iss"'),
        ({"aud": None}, '"aud"'),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "expired"),
        ({"exp": None}, '"exp"'),
        ({"sub": None}, '"sub"'),
    ],
)
async def test_claims_are_checked(
    serve: Serve,
    issuer: JwksIssuer,
    keys: dict[str, SigningKey],
    claims: dict[str, Any],
    fragment: str,
) -> None:
    token = issuer.token(keys["EdDSA"], new_user(), **claims)
    async with serve(issuer) as client:
        expect_401(await client.get("/api/tasks", headers=bearer(token)), fragment)


async def test_issuer_url_with_a_trailing_slash_matches(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey]
) -> None:
    token = issuer.token(keys["EdDSA"], new_user(), iss=f"{issuer.url}/", aud=f"{issuer.url}/")
    async with serve(issuer, better_auth_url=f"{issuer.url}/") as client:
        assert (await client.get("/api/tasks", headers=bearer(token))).status_code == 200


async def test_configured_issuer_and_audience_win_over_the_defaults(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey]
) -> None:
    wanted = {"iss": "https://auth.example.com", "aud": "tasks-api"}
    async with serve(issuer, jwt_issuer=wanted["iss"], jwt_audience=wanted["aud"]) as client:
        ok = issuer.token(keys["ES256"], new_user(), **wanted)
        assert (await client.get("/api/tasks", headers=bearer(ok))).status_code == 200
        default = issuer.token(keys["ES256"], new_user())
        expect_401(await client.get("/api/tasks", headers=bearer(default)), "issuer")


# --- The verified-token cache.


async def test_cached_token_still_expires(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey]
) -> None:
    # Valid for at least three more seconds: two requests must pass before it expires, each
    # with a key fetch and a database query, on however busy a machine.
    expires = int(time.time()) + 4
    token = issuer.token(keys["EdDSA"], new_user(), exp=expires)
    async with serve(issuer, jwt_leeway_seconds=0) as client:
        assert (await client.get("/api/tasks", headers=bearer(token))).status_code == 200
        assert (await client.get("/api/tasks", headers=bearer(token))).status_code == 200
        await asyncio.sleep(max(0.0, expires - time.time()) + 0.05)
        expect_401(await client.get("/api/tasks", headers=bearer(token)), "expired")


async def test_a_tampered_copy_of_a_cached_token_is_refused(
    serve: Serve, issuer: JwksIssuer, keys: dict[str, SigningKey]
) -> None:
    token = issuer.token(keys["ES256"], new_user())
    async with serve(issuer) as client:
        assert (await client.get("/api/tasks", headers=bearer(token))).status_code == 200
        header, _, signature = token.split(".")
        other = issuer.token(keys["ES256"], "mallory").split(".")[1]
        forged = f"{header}.{other}.{signature}"
        expect_401(await client.get("/api/tasks", headers=bearer(forged)), "signature")
