"""The database engine: connection strings as users paste them, pool settings, and fault triage."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_only as await_

from todo_api.settings import ConfigError, Settings

POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg"}
SQLITE_SCHEMES = {"sqlite", "sqlite+aiosqlite"}

# libpq parameters that asyncpg does not take as keywords; translated in `_postgres_url`.
_LIBPQ_ONLY_PARAMS = ("sslmode", "channel_binding", "options")

# SQLSTATE classes and codes that mean "the server is not there for us right now".
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300", "53400")


def parse_database_url(raw: str) -> tuple[URL, dict[str, Any]]:
    """The async-driver URL and the driver's connect arguments for a pasted connection string."""
    try:
        url = make_url(raw.strip())
    except exc.ArgumentError:
        raise ConfigError(
            "DATABASE_URL is not a database URL; expected for example "
            "postgresql://user:password@host/dbname or sqlite+aiosqlite:///path/to/tasks.db"
        ) from None
    if url.drivername in POSTGRES_SCHEMES:
        return _postgres_url(url)
    if url.drivername in SQLITE_SCHEMES:
        return url.set(drivername="sqlite+aiosqlite"), {}
    raise ConfigError(
        f"DATABASE_URL scheme {url.drivername!r} is not supported; use postgresql://... "
        "(PostgreSQL, Neon) or sqlite+aiosqlite:///... (embedded)"
    )


def _postgres_url(url: URL) -> tuple[URL, dict[str, Any]]:
    if not url.host and "host" not in url.query:
        raise ConfigError("DATABASE_URL has no host name; expected postgresql://user:pw@host/db")
    if not url.database:
        raise ConfigError("DATABASE_URL has no database name; expected postgresql://.../dbname")
    query = dict(url.query)
    connect_args: dict[str, Any] = {}
    sslmode = query.pop("sslmode", None)
    if sslmode is not None:
        # asyncpg's `ssl` accepts libpq's sslmode names.
        connect_args["ssl"] = sslmode
    query.pop("channel_binding", None)  # asyncpg negotiates SCRAM itself
    options = query.pop("options", None)
    if options is not None:
        connect_args["server_settings"] = {"options": str(options)}
    return url.set(drivername="postgresql+asyncpg", query=query), connect_args


def create_engine(settings: Settings) -> AsyncEngine:
    url, connect_args = parse_database_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    server_settings = connect_args.pop("server_settings", {})
    server_settings.setdefault("application_name", "todo-api")
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        # Replaced by `_ping_on_checkout`, which does the same in one round trip.
        pool_pre_ping=False,
        connect_args={
            "timeout": settings.db_connect_timeout_seconds,
            "command_timeout": settings.db_statement_timeout_seconds,
            "server_settings": server_settings,
            **connect_args,
        },
    )
    _ping_on_checkout(engine)
    return engine


def _ping_on_checkout(engine: AsyncEngine) -> None:
    """A connection the server or a proxy dropped while idle is replaced, not handed out.

    This is `pool_pre_ping`, but SQLAlchemy's asyncpg probe wraps its query in BEGIN ... ROLLBACK:
    three round trips before every request. A trivial query sent with the simple query
    protocol needs no transaction (nor a prepared statement, so PgBouncer's transaction mode is
    fine with it): one round trip.
    """

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        try:
            await_(record.driver_connection.execute("SELECT 1"))
        except Exception as error:
            # As pre-ping does: this connection is replaced, and the rest of the pool, likely
            # dropped at the same moment, is discarded too.
            raise exc.InvalidatePoolError(str(error)) from error


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
        cursor.close()

    return engine


def sqlite_file(settings: Settings) -> Path | None:
    """The file of an embedded database, or None for a server database or an in-memory one."""
    url, _ = parse_database_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def is_unavailable(error: BaseException) -> bool:
    """Whether an error means the database cannot be reached now (503), not a bug (500)."""
    if isinstance(error, exc.OperationalError | exc.InterfaceError | exc.TimeoutError):
        return True
    if isinstance(error, OSError | TimeoutError):
        return True
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        return isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    return False


async def ping(engine: AsyncEngine, within_seconds: float) -> None:
    """Raise unless the database answers a trivial query in time."""
    async with asyncio.timeout(within_seconds), engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
