"""Idempotent writes (the IETF httpapi Idempotency-Key draft): a request sent again with the same
key gets the first one's response, and writes nothing.

The key is claimed, the write made and its response stored in ONE transaction: a process that
dies before answering leaves either nothing (the retry runs anew) or the write together with
its response (the retry gets that response), never a write without one. A repeat that arrives
while the first is still running is refused at once on PostgreSQL (a try-lock on the user and
key, held until the first commits); SQLite runs one writing transaction at a time, so there the
repeat waits for the first and gets its response.

On PostgreSQL the common writes (a create without tags, a completion of a task that does not
recur) are instead ONE statement, atomic on its own: the try-lock, the write, and the key's row
with the response, which is known before the write but for a new task's id and so is written
by the statement from the write's result. A key stored before makes the statement fail on the
key's primary key, undoing the write with it; the transaction (`run`) then answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import (
    LargeBinary,
    String,
    and_,
    bindparam,
    cast,
    exists,
    func,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import ReturningInsert, ReturningUpdate
from sqlalchemy.sql.selectable import CTE

from todo_api.database import Row, StatementRunner, TransactionRunner
from todo_api.schema import idempotency_keys
from todo_api.tasks.repository import (
    COMPLETE_PLAIN,
    OWNED_KEYS,
    READ_VERSION,
    TaskRepository,
    completion_kind,
    completion_parameters,
    create_where,
)

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
_STORE_VALUES = {
    name: bindparam(f"stored_{name}", type_=idempotency_keys.c[name].type)
    for name in ("status", "body", "location", "etag")
}
_STORE: ReturningUpdate[Any] = (
    update(idempotency_keys)
    .where(*_THIS_KEY)
    .values(**_STORE_VALUES)
    .returning(idempotency_keys.c.key)
)


def _try_lock() -> CTE:
    """A try-lock on the user and key, held until the transaction ends: `locked` is false when
    another holds it (a second holder is refused rather than made to wait)."""
    return select(
        func.pg_try_advisory_xact_lock(
            func.hashtext(_CLAIMED_ROW["user_id"]), func.hashtext(_KEY)
        ).label("locked")
    ).cte("locked")


def _lock_and_claim() -> Select[Any]:
    """PostgreSQL, in one round trip: a try-lock on the user and key (held until the
    transaction ends; a second holder is refused rather than made to wait), the claim, and
    the response stored under the key before.

    The claim's insert reads the lock's result, so it runs only once the lock is held. The
    stored response is read from the statement's snapshot: a key that another request
    committed after the snapshot was taken and before the lock was is neither claimed nor
    seen, and is read again in a statement of its own (`_STORED`)."""
    locked = _try_lock()
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


def _written_once(locked: CTE, written: CTE, stored: dict[str, Any]) -> Select[Any]:
    """PostgreSQL, one statement: the try-lock (`locked`), the write (`written`, which reads
    the lock first and writes nothing without it), and the key's row with the response
    (`stored`: its columns' values, which may read `written`'s row), inserted only with a
    written row. A key stored before fails the statement (its primary key): nothing is
    written. One row: `locked`, and the written task's columns (None when none was)."""
    keyed = insert(idempotency_keys).from_select(
        list(stored), select(*stored.values()).select_from(written)
    )
    store = keyed.returning(idempotency_keys.c.key).cte("stored")
    # PostgreSQL runs a writing common table expression whether or not the query reads it.
    return (
        select(locked.c.locked, *written.c)
        .select_from(locked.outerjoin(written, true()))
        .add_cte(store)
    )


def _create_once() -> Select[Any]:
    """A task created (without tags) and its 201 stored: the body's bytes around the new id
    (`body_head`, `body_tail`), the Location with the id after `location_prefix`."""
    locked = _try_lock()
    written = create_where(locked.c.locked).cte("written")
    task_id = cast(written.c.id, String)
    head = bindparam("body_head", type_=LargeBinary)
    body = head.op("||", return_type=LargeBinary)(func.convert_to(task_id, "UTF8")).op(
        "||", return_type=LargeBinary
    )(bindparam("body_tail", type_=LargeBinary))
    location = bindparam("location_prefix", type_=String) + task_id
    stored = _CLAIMED_ROW | {
        "status": literal(201),
        "body": body,
        "location": location,
        "etag": literal('"1"'),
    }
    return _written_once(locked, written, stored)


def _complete_once(kind: str) -> Select[Any]:
    """A task that does not recur completed (toggled, or set), if still at the version it was
    read at, and its response (`stored_*`, as `_STORE` takes it) stored."""
    locked = _try_lock()
    written = (
        COMPLETE_PLAIN[kind]
        .where(READ_VERSION, select(locked.c.locked).scalar_subquery())
        .cte("written")
    )
    stored = _CLAIMED_ROW | {
        "status": _STORE_VALUES["status"],
        "body": _STORE_VALUES["body"],
        "location": _STORE_VALUES["location"],
        "etag": _STORE_VALUES["etag"],
    }
    return _written_once(locked, written, stored)


_CREATE_ONCE = _create_once()
_COMPLETE_ONCE = {kind: _complete_once(kind) for kind in COMPLETE_PLAIN}


@dataclass(frozen=True, slots=True)
class CreatedResponse:
    """A create's 201 as it will be but for the new task's id: the body is `body_head`, the
    id, `body_tail`; the Location is `location_prefix` and the id."""

    body_head: bytes
    body_tail: bytes
    location_prefix: str
    etag: str = '"1"'  # a new task's version


Write = Callable[[TaskRepository], Awaitable[StoredResponse]]


def _stored_response(row: Mapping[str, Any]) -> StoredResponse:
    return StoredResponse(row["status"], row["body"], row["location"], row["etag"])


class IdempotentWrites:
    """One user's idempotency keys."""

    def __init__(self, runner: StatementRunner, user_id: str) -> None:
        self._runner = runner
        self._user_id = user_id

    @property
    def in_one_statement(self) -> bool:
        """Whether `create` and `complete` can write (PostgreSQL); elsewhere only `run`."""
        return self._runner.dialect_name == "postgresql"

    async def create(
        self,
        key: str,
        fingerprint: bytes,
        task: dict[str, Any],
        response: CreatedResponse,
    ) -> Row | None:
        """The new task's row (its public columns), created with `task` (`create_parameters`,
        without tags) together with `response` stored under the key, in one statement; None
        when nothing was written because the key was used before (`run` answers that).
        Raises KeyInFlight."""
        params = task | {
            "idempotency_key": key,
            "fingerprint": fingerprint,
            "body_head": response.body_head,
            "body_tail": response.body_tail,
            "location_prefix": response.location_prefix,
        }
        return await self._written_once(_CREATE_ONCE, params)

    async def complete(
        self,
        key: str,
        fingerprint: bytes,
        task_id: int,
        completed: bool | None,
        *,
        read_version: int,
        now: datetime,
        response: StoredResponse,
    ) -> Row | None:
        """The task's row (its public columns) after setting `completed` (None: flipping it)
        at `now`, together with `response` stored under the key, in one statement; only for a
        task that does not recur, still at `read_version`. None when nothing was written: the
        task changed, is missing or recurs, or the key was used before (`run` answers those).
        Raises KeyInFlight."""
        kind = completion_kind(completed)
        params = completion_parameters(self._user_id, task_id, completed, now)
        params |= {
            "idempotency_key": key,
            "fingerprint": fingerprint,
            "read_version": read_version,
            "stored_status": response.status,
            "stored_body": response.body,
            "stored_location": response.location,
            "stored_etag": response.etag,
        }
        return await self._written_once(_COMPLETE_ONCE[kind], params)

    async def _written_once(self, statement: Select[Any], params: dict[str, Any]) -> Row | None:
        try:
            outcome = await self._runner.fetch_one(statement, params, write=True)
        except asyncpg.UniqueViolationError:
            return None  # the key's row is there already: nothing was written
        assert outcome is not None  # the lock's row is always there
        if not outcome["locked"]:
            raise KeyInFlight
        return None if outcome["id"] is None else outcome

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
