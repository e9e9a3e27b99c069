"""What tells a process that a user's feed moved, whichever process or replica wrote.

- PostgreSQL: every write's trigger sends `NOTIFY task_changes, '<user id>'`, delivered at
  commit; each process LISTENs on ONE connection of its own and wakes that user's streams. A
  transaction-mode pooler cannot carry LISTEN (the session is not kept between transactions),
  so behind one the listener connects directly: `DB_LISTEN_URL`, or for Neon the same host
  without `-pooler`. Without either, the process polls instead (below).
- Polling (SQLite, or PostgreSQL behind a pooler without a direct address): while the process
  has open streams, it reads the feed heads of those users (one indexed query) every
  `STREAM_POLL_SECONDS` and wakes the users whose head moved. On SQLite `PRAGMA data_version`
  on one connection first says whether anything was committed at all, which costs no query.

Each source keeps itself running: a lost connection is logged once, retried with a growing
delay, and every stream is woken once it is back (it may have missed wake-ups meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, Protocol

import asyncpg
from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from todo_api.database import PostgresConnection, parse_database_url
from todo_api.live.hub import StreamHub
from todo_api.schema import task_counts
from todo_api.settings import Pooler, Settings

logger = logging.getLogger("todo_api.live")

CHANNEL = "task_changes"
_LIVENESS_SECONDS = 15.0
_MAX_RETRY_SECONDS = 10.0


class WakeupSource(Protocol):
    async def run(self) -> None:
        """Wake streams until cancelled."""


def wakeup_source(settings: Settings, engine: AsyncEngine, hub: StreamHub) -> WakeupSource:
    url, _ = parse_database_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return FeedPoller(engine, hub, settings.stream_poll_seconds, sqlite=True)
    listen = listen_connection(settings)
    if listen is None:
        logger.info(
            "Live updates poll the database every %gs: LISTEN cannot pass a transaction-mode "
            "pooler; set DB_LISTEN_URL to a direct connection to have them pushed",
            settings.stream_poll_seconds,
        )
        return FeedPoller(engine, hub, settings.stream_poll_seconds, sqlite=False)
    return PostgresListener(listen, hub)


def listen_connection(settings: Settings) -> PostgresConnection | None:
    """Where to LISTEN: a connection that keeps its session, or None if there is none."""
    if settings.db_listen_url is not None:
        direct = settings.model_copy(
            update={"database_url": settings.db_listen_url, "db_pooler": Pooler.NONE}
        )
        return PostgresConnection.from_settings(direct)
    postgres = PostgresConnection.from_settings(settings)
    if not postgres.behind_pooler:
        return postgres
    host = postgres.url.host or ""
    first, dot, rest = host.partition(".")
    if first.endswith("-pooler"):  # Neon: the same endpoint without its pooler
        direct_url = postgres.url.set(host=first.removesuffix("-pooler") + dot + rest)
        return PostgresConnection(direct_url, postgres.driver_args, behind_pooler=False)
    return None


class _Retrying:
    """Logs the first failure of a run of them, and the recovery."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._delay = 0.0

    @property
    def failing(self) -> bool:
        return self._delay > 0

    def succeeded(self) -> None:
        if self.failing:
            logger.info("%s: working again", self._what)
        self._delay = 0.0

    async def failed(self, error: BaseException) -> None:
        if not self.failing:
            logger.warning("%s failed (%r); retrying until it works", self._what, error)
        self._delay = min(max(self._delay * 2, 0.5), _MAX_RETRY_SECONDS)
        await asyncio.sleep(self._delay)


class PostgresListener:
    def __init__(self, connection: PostgresConnection, hub: StreamHub) -> None:
        self._connect_kwargs = connection.connect_kwargs()
        self._connect_kwargs["server_settings"] = {
            **self._connect_kwargs.get("server_settings", {}),
            "application_name": "todo-api-listen",
        }
        self._hub = hub
        self._retrying = _Retrying("Listening for task changes")

    async def run(self) -> None:
        while True:
            try:
                async with self._listening() as lost:
                    self._retrying.succeeded()
                    # Whatever was committed while nobody listened: every stream reads.
                    self._hub.wake_all()
                    await lost()
            except Exception as error:
                await self._retrying.failed(error)

    @asynccontextmanager
    async def _listening(self) -> AsyncIterator[Callable[[], Any]]:
        connection = await asyncpg.connect(**self._connect_kwargs)
        closed = asyncio.Event()
        connection.add_termination_listener(lambda _connection: closed.set())
        try:
            await connection.add_listener(CHANNEL, self._notified)

            async def lost() -> None:
                # A dropped network path may go unnoticed without traffic: ask now and then.
                while True:
                    with suppress(TimeoutError):
                        await asyncio.wait_for(closed.wait(), _LIVENESS_SECONDS)
                    if closed.is_set():
                        raise ConnectionError("the listening connection was closed")
                    await connection.execute("SELECT 1", timeout=_LIVENESS_SECONDS)

            yield lost
        finally:
            connection.terminate()

    def _notified(self, _connection: Any, _pid: int, _channel: str, user_id: str) -> None:
        self._hub.wake((user_id,))


_HEADS = select(task_counts.c.user_id, task_counts.c.change_seq).where(
    task_counts.c.user_id.in_(bindparam("users", expanding=True))
)


class FeedPoller:
    """Wakes the streams whose user's feed head moved since the last look."""

    def __init__(self, engine: AsyncEngine, hub: StreamHub, interval: float, *, sqlite: bool):
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._hub = hub
        self._interval = interval
        self._sqlite = sqlite
        self._heads: dict[str, int] = {}
        self._retrying = _Retrying("Polling for task changes")

    async def run(self) -> None:
        while True:
            try:
                async with self._engine.connect() as connection:
                    await self._poll(connection)
            except Exception as error:
                await self._retrying.failed(error)

    async def _poll(self, connection: AsyncConnection) -> None:
        """Keeps one connection: SQLite's data_version counts commits made by others."""
        version = None
        while True:
            if self._sqlite:
                seen = (await connection.execute(text("PRAGMA data_version"))).scalar()
                committed, version = seen != version, seen
            else:
                committed = True
            users = self._hub.users()
            if committed and users:
                rows = await connection.execute(_HEADS, {"users": users})
                moved = self._moved({row.user_id: row.change_seq for row in rows}, users)
                self._hub.wake(moved)
            if self._retrying.failing:
                self._retrying.succeeded()
                self._hub.wake_all()
            await asyncio.sleep(self._interval)

    def _moved(self, heads: dict[str, int], watched: list[str]) -> list[str]:
        moved = [user for user, head in heads.items() if self._heads.get(user) != head]
        self._heads = {user: heads.get(user, 0) for user in watched}
        return moved
