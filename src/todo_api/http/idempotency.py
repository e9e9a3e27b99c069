"""The `Idempotency-Key` header: a write answered once, and that answer replayed to retries.

The key is 1-255 printable ASCII characters, scoped to the caller (the draft's structured
string, `"..."`, is accepted too). The request is identified by its method, path and body bytes;
the same key with another request is a 422, and a repeat while the first still runs a 409.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Header, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from todo_api.http.dependencies import services_of
from todo_api.http.errors import ErrorDetail
from todo_api.schema import IDEMPOTENCY_KEY_MAX
from todo_api.tasks.idempotency import IdempotentWrites, KeyInFlight, KeyReused, StoredResponse
from todo_api.tasks.repository import TaskRepository

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX + 2,
        pattern=r"^[\x20-\x7e]+$",
        description=(
            "1-255 printable ASCII characters, unique per intended write: a retry with the same "
            "key and request gets the first response (with `Idempotent-Replayed: true`) and "
            "writes nothing"
        ),
    ),
]
IDEMPOTENCY_RESPONSES: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorDetail, "description": "A request with this Idempotency-Key is running"},
}
IN_FLIGHT = (
    "A request with this Idempotency-Key is still being processed; retry after it has finished"
)

Write = Callable[[TaskRepository], Awaitable[Response]]
# The same write with its response stored in one statement (IdempotentWrites.create, say),
# given the store, the key and the request's fingerprint: its first answer, or None where that
# statement does not apply or wrote nothing (the write then runs in the key's transaction).
OneStatement = Callable[[IdempotentWrites, str, bytes], Awaitable[Response | None]]


def _key(header: str) -> str:
    key = header[1:-1] if len(header) >= 2 and header[0] == header[-1] == '"' else header
    if not key or len(key) > IDEMPOTENCY_KEY_MAX:
        raise _invalid_key(header, f"must be 1 to {IDEMPOTENCY_KEY_MAX} characters")
    return key


def _invalid_key(header: str, message: str) -> RequestValidationError:
    problem = {"type": "idempotency_key", "loc": ("header", "Idempotency-Key"), "msg": message}
    return RequestValidationError([problem | {"input": header}])


async def _fingerprint(request: Request) -> bytes:
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.url.path.encode(), await request.body()):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


async def written_once(
    request: Request,
    header: str | None,
    tasks: TaskRepository,
    write: Write,
    one_statement: OneStatement | None = None,
) -> Response:
    """`write`'s answer. With an Idempotency-Key (`header`), stored under the key in the
    write's own transaction, or the answer stored for an earlier identical request. A 4xx is
    stored like a success; anything else that goes wrong is not, and the retry runs again.
    Where the store can (PostgreSQL), `one_statement` is tried first: the write and its stored
    answer in a single statement."""
    if header is None:
        return await write(tasks)
    key = _key(header)

    first: Response | None = None

    async def stored_write(repository: TaskRepository) -> StoredResponse:
        nonlocal first
        try:
            first = await write(repository)
        except HTTPException as error:
            if error.status_code >= 500:
                raise
            detail = JSONResponse({"detail": error.detail}).body
            return StoredResponse(error.status_code, bytes(detail))
        headers = first.headers
        return StoredResponse(
            first.status_code, bytes(first.body), headers.get("location"), headers.get("etag")
        )

    services = services_of(request)
    store = IdempotentWrites(services.runner, tasks.user_id)
    fingerprint = await _fingerprint(request)
    try:
        written = None
        if one_statement is not None and store.in_one_statement:
            written = await one_statement(store, key, fingerprint)
        if written is not None:
            first, outcome = written, None
        else:
            outcome = await store.run(key, fingerprint, stored_write)
    except KeyInFlight:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=IN_FLIGHT) from None
    except KeyReused:
        raise _invalid_key(
            header, "was used for another request (method, path or body differ); use a new key"
        ) from None
    pause = services.settings.test_pause_after_idempotent_write_seconds
    if pause and (outcome is None or not outcome.replayed):
        # For tests only (docs/sync.md): the process can be killed between commit and answer.
        await asyncio.sleep(pause)
    if first is not None and (outcome is None or not outcome.replayed):
        # The first answer as the write made it, with every header it set (a next
        # occurrence's Link, say).
        return first
    assert outcome is not None
    stored = outcome.response  # a replay, or a first answer that was a 4xx
    headers = {"idempotent-replayed": "true"} if outcome.replayed else {}
    for name, value in (("location", stored.location), ("etag", stored.etag)):
        if value is not None:
            headers[name] = value
    return Response(stored.body, stored.status, headers, media_type="application/json")
