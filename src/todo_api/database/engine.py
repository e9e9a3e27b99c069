"""The SQLAlchemy engine (migrations; on SQLite every statement), its pool, SQLite's pragmas."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from todo_api.database.url import parse_database_url, uses_transaction_pooler
from todo_api.settings import Settings


@dataclass(frozen=True)
class PostgresConnection:
    """How to open a connection to the configured PostgreSQL: asyncpg's `connect` arguments,
    the same for the engine and for the request pool (database.runner)."""

    url: URL
    driver_args: dict[str, Any]
    behind_pooler: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> PostgresConnection:
        url, connect_args = parse_database_url(settings.database_url)
        behind_pooler = uses_transaction_pooler(url, settings.db_pooler)
        server_settings: dict[str, str] = {"application_name": "todo-api"}
        if not behind_pooler:
            # Enforced by the server too, so a runaway statement stops even if the client is
            # gone. A transaction-mode pooler refuses unknown startup parameters (PgBouncer) or
            # drops them; there the client-side command_timeout is the limit (or set it on the
            # role).
            statement_ms = int(settings.db_statement_timeout_seconds * 1000)
            server_settings["statement_timeout"] = str(statement_ms)
        server_settings |= connect_args.pop("server_settings", {})
        driver_args: dict[str, Any] = {
            "timeout": settings.db_connect_timeout_seconds,
            # Client-side limit on every statement; a little above the server's, so the
            # server's clean cancel normally wins and this one catches a server that stopped
            # answering.
            "command_timeout": settings.db_statement_timeout_seconds + 1,
            "server_settings": server_settings,
            **connect_args,
        }
        if behind_pooler:
            # A transaction-mode pooler hands each transaction to any server connection: a
            # statement prepared on one is unknown on the next. So asyncpg keeps no
            # prepared-statement cache.
            driver_args["statement_cache_size"] = 0
        return cls(url, driver_args, behind_pooler)

    def connect_kwargs(self) -> dict[str, Any]:
        """Everything `asyncpg.connect` needs: host, port, user, password, database and the rest,
        read from the URL as SQLAlchemy's asyncpg dialect reads it (several hosts included)."""
        _, from_url = asyncpg_dialect().create_connect_args(self.url)
        return dict(from_url) | self.driver_args


def asyncpg_dialect() -> Dialect:
    """SQLAlchemy's dialect for asyncpg, on its own: to read URLs and compile statements."""
    return PGDialect_asyncpg()  # type: ignore[no-untyped-call]


def create_engine(settings: Settings) -> AsyncEngine:
    url, _ = parse_database_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    postgres = PostgresConnection.from_settings(settings)
    driver_args = dict(postgres.driver_args)
    if postgres.behind_pooler:
        # Nor does SQLAlchemy's layer over it, and every statement it prepares gets a unique
        # name, which a pooler's next server connection cannot already know.
        driver_args |= {
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _unique_statement_name,
        }
    # On PostgreSQL the engine runs migrations (and the tests' setup); requests go through the
    # runner's own pool (database.runner), so this pool stays small and checks each connection
    # before use.
    return create_async_engine(
        url,
        pool_size=1,
        max_overflow=4,
        pool_pre_ping=True,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_recycle=settings.db_pool_recycle_seconds,
        connect_args=driver_args,
    )


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def _sqlite_engine(url: URL, settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_timeout=settings.db_pool_timeout_seconds,
        # How long a writer waits for another's lock before giving up.
        connect_args={"timeout": settings.db_statement_timeout_seconds},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the one writer SQLite allows.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Off by default in SQLite; task_tags rows go with their task (ON DELETE CASCADE).
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def sqlite_file(settings: Settings) -> Path | None:
    """The file of an embedded database, or None for a server database or an in-memory one."""
    url, _ = parse_database_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)
