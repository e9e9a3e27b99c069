"""Idempotent writes (the IETF httpapi Idempotency-Key draft): a request sent again with the same
key gets the first one's response, and writes nothing.

The key is claimed, the write made and its response stored in ONE transaction: a process that
dies before answering leaves either nothing (the retry runs anew) or the write together with
its response (the retry gets that response), never a write without one. A repeat that arrives
while the first is still running is refused at once on PostgreSQL (a try-lock on the user and
key, held until the first commits); SQLite runs one writing transaction at a time, so there the
repeat waits for the first and gets its response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import ReturningInsert, ReturningUpdate

from todo_api.database import StatementRunner, TransactionRunner
from todo_api.schema import idempotency_keys
from todo_api.tasks.repository import OWNED_KEYS, TaskRepository

_KEY = bindparam("idempotency_key", type_=idempotency_keys.c.key.type)
_THIS_KEY = (OWNED_KEYS, idempotency_keys.c.key == _KEY)


class KeyInFlight(Exception):
    """The first request with this key is still running (a 409)."""


class KeyReused(Exception):
    """The key was used for another request (a 422)."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes
    location: str | None = None
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    response: StoredResponse
    replayed: bool


def _claim(dialect: Any) -> ReturningInsert[Any]:
    """The key, taken for this request; nothing if it is taken already. The placeholder
    response is replaced before the transaction commits, so no reader ever sees it."""
    values = {
        "user_id": bindparam("owner"),
        "key": _KEY,
        "fingerprint": bindparam("fingerprint", type_=idempotency_keys.c.fingerprint.type),
        "status": 0,
        "body": b"",
        "created_at": bindparam("now", type_=idempotency_keys.c.created_at.type),
    }
    statement = dialect.insert(idempotency_keys).values(**values)
    claimed: ReturningInsert[Any] = statement.on_conflict_do_nothing(
        index_elements=[idempotency_keys.c.user_id, idempotency_keys.c.key]
    ).returning(idempotency_keys.c.key)
    return claimed


_CLAIM = {"postgresql": _claim(postgresql), "sqlite": _claim(sqlite)}
_STORED: Select[Any] = select(
    idempotency_keys.c.fingerprint,
    idempotency_keys.c.status,
    idempotency_keys.c.body,
    idempotency_keys.c.location,
    idempotency_keys.c.etag,
).where(*_THIS_KEY)
_STORE: ReturningUpdate[Any] = (
    update(idempotency_keys)
    .where(*_THIS_KEY)
    .values(
        status=bindparam("stored_status", type_=idempotency_keys.c.status.type),
        body=bindparam("stored_body", type_=idempotency_keys.c.body.type),
        location=bindparam("stored_location", type_=idempotency_keys.c.location.type),
        etag=bindparam("stored_etag", type_=idempotency_keys.c.etag.type),
    )
    .returning(idempotency_keys.c.key)
)
# Held until the transaction ends; a second holder is refused rather than made to wait.
_TRY_LOCK: Select[Any] = select(
    func.pg_try_advisory_xact_lock(
        func.hashtext(bindparam("owner", type_=idempotency_keys.c.user_id.type)),
        func.hashtext(_KEY),
    ).label("locked")
)

Write = Callable[[TaskRepository], Awaitable[StoredResponse]]


class IdempotentWrites:
    """One user's idempotency keys."""

    def __init__(self, runner: StatementRunner, user_id: str) -> None:
        self._runner = runner
        self._user_id = user_id

    async def run(self, key: str, fingerprint: bytes, write: Write) -> Outcome:
        """`write`'s response, made with a repository inside this key's transaction; or, when
        the key was used before for the same request (`fingerprint`), that stored response.
        A response `write` raises instead of returning is not stored (the retry runs anew)."""
        dialect = self._runner.dialect_name
        params = {"owner": self._user_id, "idempotency_key": key}
        async with self._runner.transaction() as transaction:
            if dialect == "postgresql":
                lock = await transaction.fetch_one(_TRY_LOCK, params)
                if lock is None or not lock["locked"]:
                    raise KeyInFlight
            claim = params | {"fingerprint": fingerprint, "now": datetime.now(UTC)}
            if await transaction.fetch_one(_CLAIM[dialect], claim) is None:
                stored = await transaction.fetch_one(_STORED, params)
                assert stored is not None
                if stored["fingerprint"] != fingerprint:
                    raise KeyReused
                del stored["fingerprint"]
                return Outcome(StoredResponse(**stored), replayed=True)
            tasks = TaskRepository(TransactionRunner(transaction, dialect), self._user_id)
            response = await write(tasks)
            stored_values = {
                "stored_status": response.status,
                "stored_body": response.body,
                "stored_location": response.location,
                "stored_etag": response.etag,
            }
            await transaction.fetch_one(_STORE, params | stored_values)
        return Outcome(response, replayed=False)
