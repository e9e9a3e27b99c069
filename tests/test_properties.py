"""Properties: whatever a client sends, the answer is no 5xx, and an error is JSON with a detail.

Hypothesis generates the input: bodies of any JSON value (non-finite numbers, lone surrogates,
NUL, big and deeply nested values) and of bytes that are not JSON at all, for every operation
that takes a body; query strings for every operation with query parameters; odd path segments
in every templated path; odd values of the headers the service reads; and correctly signed
tokens whose header and claims hold anything. The operations are read from the app's OpenAPI
document, so an endpoint added later is covered without touching this file.

Runs are derandomized (the same examples on every run, so CI is reproducible) and bounded to a
few seconds each. PROPERTY_EXAMPLES=2000 runs more examples, with fresh randomness, to hunt.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import auth, client_for, make_settings
from tests.issuer import JwksIssuer, SigningKey, generate_private_key
from tests.test_auth import signed_token
from todo_api.http.app import create_app

_HUNT = int(os.environ.get("PROPERTY_EXAMPLES", "0"))
PROFILE = settings(
    max_examples=_HUNT or 100,
    deadline=None,
    derandomize=not _HUNT,
    database=None,
    # The client and the user's task are made once per test, on purpose, and shared by examples.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- Values: anything JSON can carry, and what Python's json reads beyond it.

characters = st.one_of(
    st.characters(),
    st.characters(categories=["Cs"]),  # lone surrogates: legal as \ud800 escapes in JSON
    st.sampled_from("\x00\x1f\x7f\u2028\ufeff\U0001f600"),
)
texts = st.one_of(
    st.text(characters, max_size=20),
    st.sampled_from(["", " ", "\x00", "\ud800", "a\udfff", "\ude00\ud83d", "x" * 2001]),
)
odd_numbers = st.sampled_from(
    [math.inf, -math.inf, math.nan, -0.0, 1e308, 5e-324, 2**63, -(2**63) - 1, 10**400, 10**4299]
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts, odd_numbers)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)
# JSON text that Python's json refuses or reads into something odd, written out as text.
raw_json = st.one_of(
    st.integers(min_value=30, max_value=5000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(min_value=4301, max_value=6000).map(lambda digits: "9" * digits),
    st.sampled_from(["NaN", "-Infinity", "1e999", "-1E400", '"\\ud800"', '"\\u0000"', "{", "[1,]"]),
)


def dumps(value: Any) -> bytes:
    # ASCII escapes keep lone surrogates as \udXXX; NaN and Infinity as Python writes them.
    return json.dumps(value, allow_nan=True).encode()


def bodies(fields: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    """Bodies for an operation whose body has `fields`: the real names with any values, any
    JSON value, JSON Python cannot read as it is, and bytes that are no JSON at all."""
    names = fields or ("title",)
    return st.one_of(
        st.fixed_dictionaries({}, optional=dict.fromkeys(names, json_values)).map(dumps),
        json_values.map(dumps),
        st.tuples(st.sampled_from(names), raw_json).map(
            lambda pair: f'{{"{pair[0]}": {pair[1]}}}'.encode()
        ),
        raw_json.map(str.encode),
        st.binary(max_size=64),
    )


media_types = st.one_of(
    st.just("application/json"),
    st.sampled_from(["application/json; charset=utf-8", "application/x+json", "text/plain", ""]),
)

# URL text: percent-encoded arbitrary bytes, with stray and broken escapes between them.
url_text = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=4).map(lambda data: quote_from_bytes(data, safe="")),
        st.sampled_from(["%", "%z", "%ED%A0%80", "%00", "+", "=", ";", "1e999", "NaN", "-1"]),
        st.text("abcxyz019-_.~", max_size=3),
        st.just("9" * 25),
    ),
    max_size=6,
).map("".join)
header_values = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"", b"*", b'"1"', b'W/"1"', b"\x00", b"\xff" * 3, b"\xed\xa0\x80"]),
)
ODD_HEADERS = ("X-Request-ID", "If-Match", "If-None-Match", "Idempotency-Key")


# --- The operations, as the app documents them.


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # the template, e.g. /api/tasks/{task_id}
    query: tuple[str, ...]  # names of its query parameters
    fields: tuple[str, ...]  # names of its body's properties
    takes_body: bool
    required: tuple[tuple[str, str], ...]  # required body properties and their JSON types

    def url(self, values: dict[str, str]) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "1"), self.path)

    def plausible_body(self) -> bytes | None:
        """The smallest body the schema allows, so a request can get past validation."""
        if not self.takes_body:
            return None
        samples = {"string": "property test", "boolean": False, "integer": 1, "array": []}
        return dumps({name: samples.get(kind) for name, kind in self.required})


def operations_of(app: FastAPI, *, streams: bool = False) -> list[Operation]:
    """The operations the app documents; those answering with an endless event stream only
    when `streams` is true (a stream that opens never ends, so it needs a property of its own)."""
    document = app.openapi()
    schemas = document.get("components", {}).get("schemas", {})
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            answers = operation.get("responses", {}).get("200", {}).get("content", {})
            if ("text/event-stream" in answers) != streams:
                continue
            content = operation.get("requestBody", {}).get("content", {})
            body = content.get("application/json", {}).get("schema")
            models = [schemas[ref.rsplit("/", 1)[1]] for ref in _refs(body)]
            properties = {name: p for m in models for name, p in m.get("properties", {}).items()}
            required = {name for m in models for name in m.get("required", [])}
            found.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    query=tuple(
                        p["name"] for p in operation.get("parameters", []) if p["in"] == "query"
                    ),
                    fields=tuple(sorted(properties)),
                    takes_body=body is not None,
                    required=tuple(
                        (name, properties[name].get("type", "")) for name in sorted(required)
                    ),
                )
            )
    return found


def _refs(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        if isinstance(ref := schema.get("$ref"), str):
            yield ref
        for value in schema.values():
            yield from _refs(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _refs(value)


# --- The property.


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def assert_sound(response: httpx.Response) -> Any:
    """No 5xx; a body, if any, is strict JSON (UTF-8, no NaN); an error carries a detail."""
    assert response.status_code < 500, f"{response.status_code} {response.text[:500]}"
    if response.status_code in (204, 304):
        return None
    body = json.loads(response.content, parse_constant=_not_json)
    if response.status_code >= 400:
        assert isinstance(body, dict), body
        assert "detail" in body, body
    return body


# --- The caller the examples of one test share.


@dataclass(frozen=True)
class Caller:
    """A user of the app under test, with a task of their own (real values for every path
    parameter, so that only the part under test is odd), and the app's operations."""

    client: httpx.AsyncClient
    user: str
    operations: list[Operation]
    path_values: dict[str, str]

    async def send(
        self,
        operation: Operation,
        *,
        body: bytes | None = None,
        media_type: str = "application/json",
        query: bytes = b"",
        segments: dict[str, str] | None = None,
        headers: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """`operation` with what is given, and otherwise a request that could succeed."""
        path = operation.url(self.path_values | (segments or {}))
        sent = auth(self.user) | ({"Content-Type": media_type} if media_type else {})
        return await self.client.request(
            operation.method,
            httpx.URL(f"http://testserver{path}", query=query),
            content=operation.plausible_body() if body is None else body,
            headers=sent | (headers or {}),
        )


@pytest.fixture
async def plain_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends each request to the path it names: the operations come from the
    OpenAPI document, every path the app serves among them."""
    async with client_for(app) as client:
        yield client


@pytest.fixture
async def caller(app: FastAPI, plain_client: httpx.AsyncClient, user: str) -> Caller:
    operations = operations_of(app)
    assert any(op.takes_body for op in operations)
    assert any(op.query for op in operations)
    created = await plain_client.post("/api/tasks", json={"title": "kept"}, headers=auth(user))
    assert created.status_code == 201, created.text
    path_values = {"task_id": str(created.json()["id"]), "user_id": user}
    return Caller(plain_client, user, operations, path_values)


@PROFILE
@given(data=st.data())
async def test_any_body_on_any_operation(caller: Caller, data: st.DataObject) -> None:
    operation = data.draw(st.sampled_from([op for op in caller.operations if op.takes_body]))
    body = data.draw(bodies(operation.fields), label="body")
    media_type = data.draw(media_types, label="content type")
    assert_sound(await caller.send(operation, body=body, media_type=media_type))


@PROFILE
@given(data=st.data())
async def test_any_query_string(caller: Caller, data: st.DataObject) -> None:
    operation = data.draw(st.sampled_from([op for op in caller.operations if op.query]))
    names = st.one_of(st.sampled_from(operation.query), url_text)
    pairs = data.draw(st.lists(st.tuples(names, url_text), max_size=6), label="parameters")
    query = "&".join(f"{name}={value}" for name, value in pairs).encode()
    body = assert_sound(await caller.send(operation, query=query))
    if isinstance(body, dict) and isinstance(body.get("detail"), list):  # a 422: names them
        assert all(problem["loc"][0] == "query" for problem in body["detail"]), body


@PROFILE
@given(data=st.data())
async def test_any_path_segment(caller: Caller, data: st.DataObject) -> None:
    operation = data.draw(st.sampled_from([op for op in caller.operations if "{" in op.path]))
    name = data.draw(st.sampled_from(re.findall(r"\{(\w+)\}", operation.path)))
    segment = data.draw(url_text.filter(bool), label="segment")
    assert_sound(await caller.send(operation, segments={name: segment}))


@PROFILE
@given(data=st.data())
async def test_any_header_values(caller: Caller, data: st.DataObject) -> None:
    operation = data.draw(st.sampled_from(caller.operations))
    odd = data.draw(st.dictionaries(st.sampled_from(ODD_HEADERS), header_values, min_size=1))
    response = await caller.send(operation, headers=odd)
    assert_sound(response)
    sent = odd.get("X-Request-ID")
    if sent is not None and not re.fullmatch(rb"[A-Za-z0-9._:@/+=-]{1,128}", sent):
        assert response.headers["x-request-id"].encode() != sent


@PROFILE
@given(data=st.data())
async def test_any_stream_cursor(caller: Caller, app: FastAPI, data: st.DataObject) -> None:
    """A stream resumes from `since` or `Last-Event-ID`; a value the service did not make is
    refused before the stream opens (so each example ends, and a hang fails the test)."""
    (stream,) = operations_of(app, streams=True)
    cursor = data.draw(url_text.filter(bool), label="since")
    others = st.sampled_from([name for name in stream.query if name != "since"])
    more = data.draw(st.lists(st.tuples(others, url_text), max_size=3), label="more")
    pairs = [*more, ("since", cursor)]
    query = "&".join(f"{name}={value}" for name, value in pairs).encode()
    odd = data.draw(st.dictionaries(st.just("Last-Event-ID"), header_values), label="headers")
    async with asyncio.timeout(10):
        response = await caller.send(stream, query=query, headers=odd)
    assert_sound(response)
    assert 400 <= response.status_code < 500


# --- Tokens: correctly signed, with anything in their header and claims.

OPTIONAL_HEADER = ("typ", "cty", "crit", "b64", "jku", "x5c", "zip")
OPTIONAL_CLAIMS = ("nbf", "iat", "iss", "aud", "jti", "azp", "name")


def token_parts(header: dict[str, Any], claims: dict[str, Any]) -> st.SearchStrategy[Any]:
    """(header, claims) starting from a valid pair: each member kept or replaced by any value,
    other members added; or, less often, any value or unreadable JSON in place of either."""
    return st.tuples(
        _object_or_anything(header, OPTIONAL_HEADER), _object_or_anything(claims, OPTIONAL_CLAIMS)
    )


def _object_or_anything(valid: dict[str, Any], optional: tuple[str, ...]) -> st.SearchStrategy[Any]:
    members = {name: st.one_of(st.just(value), json_values) for name, value in valid.items()}
    return st.one_of(
        st.fixed_dictionaries(
            members, optional={name: json_values for name in optional if name not in valid}
        ),
        json_values,
        raw_json.map(str.encode),
    )


def assert_accepted_or_401(response: httpx.Response) -> None:
    body = assert_sound(response)
    assert response.status_code in (200, 401), response.text
    if response.status_code == 401:
        assert response.headers["www-authenticate"] == "Bearer"
        assert isinstance(body["detail"], str)


@PROFILE
@given(data=st.data())
async def test_any_token_header_and_claims_signed_with_the_secret(
    plain_client: httpx.AsyncClient, user: str, data: st.DataObject
) -> None:
    claims = {"sub": user, "exp": int(time.time()) + 600}
    header, claims = data.draw(token_parts({"alg": "HS256"}, claims), label="header, claims")
    token = signed_token(header, claims)
    response = await plain_client.get("/api/tasks", headers={"Authorization": f"Bearer {token}"})
    assert_accepted_or_401(response)


@PROFILE
@given(value=st.one_of(st.binary(max_size=200), url_text.map(str.encode)))
async def test_any_authorization_header(plain_client: httpx.AsyncClient, value: bytes) -> None:
    for header in (value, b"Bearer " + value):
        response = await plain_client.get("/api/tasks", headers={"Authorization": header})  # type: ignore[dict-item]
        assert_accepted_or_401(response)
        assert response.status_code == 401


@dataclass(frozen=True)
class TrustedIssuer:
    client: httpx.AsyncClient  # of an app that verifies tokens with the issuer's JWKS
    key: SigningKey
    url: str


@pytest.fixture
async def trusted_issuer(app: FastAPI, database_url: str) -> AsyncIterator[TrustedIssuer]:
    key = SigningKey("EdDSA", generate_private_key("EdDSA"))
    issuer = JwksIssuer()
    issuer.publish(key)
    issuer.start()
    config = make_settings(database_url, better_auth_url=issuer.url)
    application = create_app(config, engine=app.state.services.engine)
    try:
        async with client_for(application) as client:
            yield TrustedIssuer(client, key, issuer.url)
    finally:
        await application.state.services.aclose(dispose_engine=False)
        issuer.stop()


@settings(PROFILE, max_examples=max(_HUNT // 2, 50))
@given(data=st.data())
async def test_any_token_header_and_claims_signed_with_the_issuers_key(
    trusted_issuer: TrustedIssuer, user: str, data: st.DataObject
) -> None:
    issuer = trusted_issuer
    valid = {"sub": user, "exp": int(time.time()) + 600, "iss": issuer.url, "aud": issuer.url}
    header, claims = data.draw(
        token_parts({"alg": "EdDSA", "kid": issuer.key.kid}, valid), label="header, claims"
    )
    token = signed_token(header, claims, key=issuer.key.private_key, algorithm="EdDSA")
    response = await issuer.client.get("/api/tasks", headers={"Authorization": f"Bearer {token}"})
    assert_accepted_or_401(response)
