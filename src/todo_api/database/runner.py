"""What runs the task queries: a prebuilt SQLAlchemy Core statement in, rows out.

SQLAlchemy builds every statement, and with it the ownership filter each one carries. What
executes them depends on the database:

- PostgreSQL: asyncpg's own pool runs the statement's SQL, compiled once per statement by
  SQLAlchemy's asyncpg dialect. SQLAlchemy's async execution path costs about 170 us of CPU per
  statement, checkout included; asyncpg's pool and query about 50 us. At thousands of requests a
  second the difference is a third of the server's core (bench/RESULTS.md, step 10).
- SQLite: the engine runs it, as SQLAlchemy does everywhere.

Either way a statement is atomic and committed on its own before the call returns, so a caller
that answers afterwards never reports a write that is not stored. Writes that take several
statements run them in a `transaction()`, committed when its block ends.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from sqlalchemy import literal, select, text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from todo_api.database.engine import PostgresConnection, asyncpg_dialect
from todo_api.database.url import parse_database_url
from todo_api.settings import Settings

Row = dict[str, Any]


class Record(Protocol):
    """A row of a result read as it came (asyncpg's Record, SQLAlchemy's RowMapping): values
    by column name. Lists are read without copying each row into a dict first, which for a
    page of 100 tasks is a tenth of the request."""

    def __getitem__(self, name: str, /) -> Any: ...


class Transaction(Protocol):
    """Statements on one connection, inside one database transaction."""

    async def fetch_all(
        self, statement: Executable, params: Mapping[str, Any]
    ) -> Sequence[Record]: ...

    async def fetch_one(self, statement: Executable, params: Mapping[str, Any]) -> Row | None: ...


class StatementRunner(Protocol):
    dialect_name: str  # "postgresql" or "sqlite": for the few statements that differ

    async def fetch_all(
        self, statement: Executable, params: Mapping[str, Any]
    ) -> Sequence[Record]: ...

    async def fetch_one(
        self, statement: Executable, params: Mapping[str, Any], *, write: bool
    ) -> Row | None:
        """The first row, or None; `write` says whether the statement changes data, for a
        runner that commits writes differently from reads."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A transaction for several statements: committed when the block ends, rolled back
        when it raises."""

    async def ping(self, within_seconds: float) -> None:
        """Raise unless the database answers a trivial query in time."""

    async def aclose(self) -> None: ...


def create_runner(settings: Settings, engine: AsyncEngine) -> StatementRunner:
    url, _ = parse_database_url(settings.database_url)
    if url.get_backend_name() == "postgresql":
        return AsyncpgRunner(PostgresConnection.from_settings(settings), settings)
    return EngineRunner(engine)


class _EngineTransaction:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def fetch_all(self, statement: Executable, params: Mapping[str, Any]) -> Sequence[Record]:
        return (await self._connection.execute(statement, params)).mappings().all()

    async def fetch_one(self, statement: Executable, params: Mapping[str, Any]) -> Row | None:
        row = (await self._connection.execute(statement, params)).first()
        return None if row is None else dict(row._mapping)


class EngineRunner:
    """Statements through a SQLAlchemy engine, each committed on its own (autocommit)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.dialect_name = engine.dialect.name
        self._transactional = engine
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def fetch_all(self, statement: Executable, params: Mapping[str, Any]) -> Sequence[Record]:
        async with self._engine.connect() as connection:
            return (await connection.execute(statement, params)).mappings().all()

    async def fetch_one(
        self, statement: Executable, params: Mapping[str, Any], *, write: bool
    ) -> Row | None:
        # A write is committed on leaving begin()'s block (on an autocommit engine that adds no
        # round trip); a read needs no transaction block at all, which saves its bookkeeping.
        connect = self._engine.begin if write else self._engine.connect
        async with connect() as connection:
            row = (await connection.execute(statement, params)).first()
        return None if row is None else dict(row._mapping)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._transactional.begin() as connection:
            yield _EngineTransaction(connection)

    async def ping(self, within_seconds: float) -> None:
        async with asyncio.timeout(within_seconds), self._engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def aclose(self) -> None:
        """Nothing of its own to close: the engine belongs to whoever made it."""


@dataclass(frozen=True, slots=True)
class _CompiledStatement:
    sql: str
    names: tuple[str, ...]  # the parameter for $1, $2, ...
    fixed: Mapping[str, Any]  # values written into the statement itself, e.g. completed=False

    @classmethod
    def of(cls, statement: Executable, dialect: Dialect) -> _CompiledStatement:
        assert isinstance(statement, ClauseElement)
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        assert compiled.positiontup is not None
        binds = compiled.binds
        fixed = {name: bind.value for name, bind in binds.items() if not bind.required}
        return cls(compiled.string, tuple(compiled.positiontup), fixed)

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        # A parameter the caller forgot is a KeyError (a bug, a 500), never a silent NULL.
        return [params[name] if name in params else self.fixed[name] for name in self.names]


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """asyncpg's pool resets a returned connection (RESET ALL, UNLISTEN, ...): one more round
    trip per request. The service sets no session state, and an open transaction is rolled
    back by the pool whatever this does, so there is nothing to reset."""


class _AsyncpgTransaction:
    def __init__(self, runner: AsyncpgRunner, connection: asyncpg.Connection) -> None:
        self._runner = runner
        self._connection = connection

    async def fetch_all(self, statement: Executable, params: Mapping[str, Any]) -> Sequence[Record]:
        compiled = self._runner.compile(statement)
        records: list[Record] = await self._connection.fetch(
            compiled.sql, *compiled.arguments(params)
        )
        return records

    async def fetch_one(self, statement: Executable, params: Mapping[str, Any]) -> Row | None:
        compiled = self._runner.compile(statement)
        record = await self._connection.fetchrow(compiled.sql, *compiled.arguments(params))
        return None if record is None else dict(record)


# Statements built per request (a list with filters) are compiled per shape; the least recently
# used are forgotten beyond this many, so no client can grow the cache without bound.
COMPILED_STATEMENTS_KEPT = 512


class AsyncpgRunner:
    """Statements on asyncpg's pool, each compiled once to SQL text with `$n` parameters.

    Values pass to asyncpg as they are: the tasks table's types (bigint, varchar, boolean,
    timestamptz, aware datetimes) need no conversion. Each statement commits on its own (no
    BEGIN/COMMIT round trips); behind a transaction-mode pooler it runs in a transaction, since
    asyncpg prepares and executes in two round trips that the pooler would otherwise hand to
    two different server connections.
    """

    dialect_name = "postgresql"

    def __init__(self, connection: PostgresConnection, settings: Settings) -> None:
        self._dialect = asyncpg_dialect()
        self._compiled: OrderedDict[Executable, _CompiledStatement] = OrderedDict()
        self._in_transaction = connection.behind_pooler
        self._acquire_timeout = settings.db_pool_timeout_seconds
        # Connections open as requests need them and close after idling for the recycle time;
        # a connection the server closed (a restart, an idle timeout) is replaced on checkout.
        self._pool_arguments = {
            "min_size": 0,
            "max_size": settings.db_pool_size + settings.db_max_overflow,
            "max_inactive_connection_lifetime": settings.db_pool_recycle_seconds,
            "reset": _keep_session,
            **connection.connect_kwargs(),
        }
        self._pool: asyncpg.Pool | None = None
        self._starting = asyncio.Lock()

    async def fetch_all(self, statement: Executable, params: Mapping[str, Any]) -> Sequence[Record]:
        compiled = self.compile(statement)
        async with self._connection() as connection:
            records: list[Record] = await connection.fetch(
                compiled.sql, *compiled.arguments(params)
            )
        return records

    async def fetch_one(
        self, statement: Executable, params: Mapping[str, Any], *, write: bool
    ) -> Row | None:
        compiled = self.compile(statement)
        async with self._connection() as connection:
            record = await connection.fetchrow(compiled.sql, *compiled.arguments(params))
        return None if record is None else dict(record)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._connection(in_transaction=True) as connection:
            yield _AsyncpgTransaction(self, connection)

    async def ping(self, within_seconds: float) -> None:
        async with asyncio.timeout(within_seconds), self._connection() as connection:
            await connection.execute("SELECT 1")

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    def compile(self, statement: Executable) -> _CompiledStatement:
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = self._compiled[statement] = _CompiledStatement.of(statement, self._dialect)
            if len(self._compiled) > COMPILED_STATEMENTS_KEPT:
                self._compiled.popitem(last=False)
        elif len(self._compiled) > COMPILED_STATEMENTS_KEPT // 2:
            # Only once there are many is the order kept: the prebuilt statements of the hot
            # paths then stay, and a cache that never fills costs nothing extra per call.
            self._compiled.move_to_end(statement)
        return compiled

    @asynccontextmanager
    async def _connection(
        self, *, in_transaction: bool = False
    ) -> AsyncIterator[asyncpg.Connection]:
        pool = await self._started_pool()
        async with asyncio.timeout(self._acquire_timeout):
            connection = await pool.acquire()
        try:
            if in_transaction or self._in_transaction:
                async with connection.transaction():
                    yield connection
            else:
                yield connection
        finally:
            await pool.release(connection)

    async def _started_pool(self) -> asyncpg.Pool:
        # Made on first use, not with the app: a pool belongs to the event loop it starts in,
        # which is the server's, not whichever loop (if any) was current when the app was built.
        if self._pool is None:
            async with self._starting:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(**self._pool_arguments)
        return self._pool


class TransactionRunner:
    """A runner whose every statement runs in one open transaction: for a caller that needs
    another component's writes (a TaskRepository's) to commit or roll back with its own."""

    def __init__(self, transaction: Transaction, dialect_name: str) -> None:
        self.dialect_name = dialect_name
        self._transaction = transaction

    async def fetch_all(self, statement: Executable, params: Mapping[str, Any]) -> Sequence[Record]:
        return await self._transaction.fetch_all(statement, params)

    async def fetch_one(
        self, statement: Executable, params: Mapping[str, Any], *, write: bool
    ) -> Row | None:
        return await self._transaction.fetch_one(statement, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        # Already in one: its statements simply join it.
        yield self._transaction

    async def ping(self, within_seconds: float) -> None:
        async with asyncio.timeout(within_seconds):
            await self._transaction.fetch_one(select(literal(1)), {})

    async def aclose(self) -> None:
        """The transaction belongs to whoever opened it."""
