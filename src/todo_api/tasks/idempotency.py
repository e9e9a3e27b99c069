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

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, literal, select, update
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


# The key's row as a claim writes it. The placeholder response is replaced before the
# transaction commits, so no reader ever sees it.
_CLAIMED_ROW = {
    "user_id": bindparam("owner", type_=idempotency_keys.c.user_id.type),
    "key": _KEY,
    "fingerprint": bindparam("fingerprint", type_=idempotency_keys.c.fingerprint.type),
    "status": literal(0),
    "body": literal(b""),
    "created_at": bindparam("now", type_=idempotency_keys.c.created_at.type),
}
_KEY_COLUMNS = [idempotency_keys.c.user_id, idempotency_keys.c.key]


def _claim(dialect: Any) -> ReturningInsert[Any]:
    """The key, taken for this request; nothing if it is taken already."""
    statement = dialect.insert(idempotency_keys).values(**_CLAIMED_ROW)
    claimed: ReturningInsert[Any] = statement.on_conflict_do_nothing(
        index_elements=_KEY_COLUMNS
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


def _lock_and_claim() -> Select[Any]:
    """PostgreSQL, in one round trip: a try-lock on the user and key (held until the
    transaction ends; a second holder is refused rather than made to wait), the claim, and
    the response stored under the key before.

    The claim's insert reads the lock's result, so it runs only once the lock is held. The
    stored response is read from the statement's snapshot: a key that another request
    committed after the snapshot was taken and before the lock was is neither claimed nor
    seen, and is read again in a statement of its own (`_STORED`)."""
    locked = select(
        func.pg_try_advisory_xact_lock(
            func.hashtext(_CLAIMED_ROW["user_id"]), func.hashtext(_KEY)
        ).label("locked")
    ).cte("locked")
    claimed = (
        postgresql.insert(idempotency_keys)
        .from_select(list(_CLAIMED_ROW), select(*_CLAIMED_ROW.values()).where(locked.c.locked))
        .on_conflict_do_nothing(index_elements=_KEY_COLUMNS)
        .returning(idempotency_keys.c.key)
        .cte("claimed")
    )
    return select(
        locked.c.locked, exists(claimed.select()).label("claimed"), *_STORED.selected_columns
    ).select_from(locked.outerjoin(idempotency_keys, and_(*_THIS_KEY)))


_LOCK_AND_CLAIM = _lock_and_claim()

Write = Callable[[TaskRepository], Awaitable[StoredResponse]]


def _stored_response(row: Mapping[str, Any]) -> StoredResponse:
    return StoredResponse(row["status"], row["body"], row["location"], row["etag"])


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
        claim = params | {"fingerprint": fingerprint, "now": datetime.now(UTC)}
        async with self._runner.transaction() as transaction:
            if dialect == "postgresql":
                outcome = await transaction.fetch_one(_LOCK_AND_CLAIM, claim)
                assert outcome is not None  # the lock's row is always there
                if not outcome["locked"]:
                    raise KeyInFlight
                claimed, stored = outcome["claimed"], outcome
            else:
                claimed = await transaction.fetch_one(_CLAIM[dialect], claim) is not None
                stored = None
            if not claimed:
                if stored is None or stored["fingerprint"] is None:
                    stored = await transaction.fetch_one(_STORED, params)
                assert stored is not None
                if stored["fingerprint"] != fingerprint:
                    raise KeyReused
                return Outcome(_stored_response(stored), replayed=True)
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
