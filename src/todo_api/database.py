"""The database engine: connection strings as users paste them, pool settings, and fault triage."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from todo_api.settings import ConfigError, Pooler, Settings

POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg"}
SQLITE_SCHEMES = {"sqlite", "sqlite+aiosqlite"}

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_CHANNEL_BINDINGS = ("disable", "prefer", "require")
_TARGET_SESSION_ATTRS = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")

# The libpq parameters a pasted connection string may carry, and what each becomes.
SUPPORTED_PARAMETERS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslnegotiation",
    "channel_binding",
    "options",
    "application_name",
    "connect_timeout",
    "target_session_attrs",
    "host",
)

# SQLSTATE classes and codes that mean "the server is not there for us right now";
# 57014 is a statement cancelled by statement_timeout: the database did not answer in time.
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "57014", "53300", "53400")


_REFUSED_LOGIN = re.compile(r"password authentication failed|role \".*\" does not exist")
_MISSING_DATABASE = re.compile(r"database \".*\" does not exist")


class DatabaseNotReady(Exception):
    """The schema is not migrated yet: the database has not been reachable since start-up."""


@dataclass
class DatabaseState:
    """What one app instance knows about its database beyond the engine."""

    migrated: bool = True


def uses_transaction_pooler(url: URL, pooler: Pooler) -> bool:
    if pooler is Pooler.AUTO:
        hosts = [url.host or "", *_as_tuple(url.query.get("host"))]
        return any("-pooler" in host.split(":")[0].split(".")[0] for host in hosts)
    return pooler is Pooler.TRANSACTION


def parse_database_url(raw: str) -> tuple[URL, dict[str, Any]]:
    """The async-driver URL and the driver's connect arguments for a pasted connection string.

    Accepts what PostgreSQL providers hand out (Neon's console string as pasted): libpq's
    parameters become asyncpg's arguments, and anything it cannot honour is a ConfigError,
    one line that never repeats the password.
    """
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
    if url.host and "@" in url.host:
        raise ConfigError(
            "DATABASE_URL has more than one '@': percent-encode special characters in the "
            "user name and password ('@' as %40, ':' as %3A, '/' as %2F, '#' as %23)"
        )
    if not url.host and "host" not in url.query:
        raise ConfigError("DATABASE_URL has no host name; expected postgresql://user:pw@host/db")
    if not url.database:
        raise ConfigError("DATABASE_URL has no database name; expected postgresql://.../dbname")
    query = {name: _single(name, value) for name, value in url.query.items() if name != "host"}
    unknown = sorted(set(query) - set(SUPPORTED_PARAMETERS))
    if unknown:
        raise ConfigError(
            f"DATABASE_URL parameter {unknown[0]!r} is not supported; remove it "
            f"(supported: {', '.join(SUPPORTED_PARAMETERS)})"
        )
    connect_args: dict[str, Any] = {}
    ssl_arg = _ssl_argument(query)
    if ssl_arg is not None:
        connect_args["ssl"] = ssl_arg
    if (negotiation := query.get("sslnegotiation")) is not None:
        _one_of("sslnegotiation", negotiation, ("postgres", "direct"))
        # Direct TLS skips the SSLRequest round trip; it needs TLS, so sslmode=require or up.
        if negotiation == "direct":
            if not isinstance(ssl_arg, ssl.SSLContext):
                raise ConfigError("DATABASE_URL sslnegotiation=direct needs sslmode=require or up")
            connect_args["direct_tls"] = True
    # asyncpg authenticates with SCRAM-SHA-256 itself but without channel binding; the value is
    # checked, then left to TLS (use sslmode=verify-full to rule out a man in the middle).
    if (binding := query.get("channel_binding")) is not None:
        _one_of("channel_binding", binding, _CHANNEL_BINDINGS)
    if (attrs := query.get("target_session_attrs")) is not None:
        connect_args["target_session_attrs"] = _one_of(
            "target_session_attrs", attrs, _TARGET_SESSION_ATTRS
        )
    if (timeout := query.get("connect_timeout")) is not None:
        connect_args["timeout"] = _positive_seconds(timeout)
    server_settings = {
        name: query[name] for name in ("options", "application_name") if query.get(name)
    }
    if server_settings:
        connect_args["server_settings"] = server_settings
    host_only = {name: value for name, value in url.query.items() if name == "host"}
    return url.set(drivername="postgresql+asyncpg", query=host_only), connect_args


def _ssl_argument(query: dict[str, str]) -> ssl.SSLContext | str | bool | None:
    """libpq's sslmode as asyncpg's `ssl`: an SSLContext wherever TLS is required.

    `require` encrypts without checking the certificate, as libpq does, unless `sslrootcert`
    is given (libpq then verifies the chain, as with `verify-ca`). `verify-ca` checks the chain,
    `verify-full` also the host name, against `sslrootcert` (`system`: the system's CAs).
    """
    mode = query.get("sslmode")
    rootcert = query.get("sslrootcert")
    if mode is None:
        if rootcert is not None or "sslcert" in query:
            raise ConfigError(
                "DATABASE_URL has sslrootcert/sslcert but no sslmode; add sslmode=verify-full"
            )
        return None  # asyncpg's own default: TLS when the server offers it (libpq's `prefer`)
    _one_of("sslmode", mode, SSL_MODES)
    if mode == "disable":
        return False
    if mode in ("allow", "prefer"):
        return mode  # asyncpg falls back to plain text for these, as libpq does
    if mode == "require" and rootcert is not None:
        mode = "verify-ca"
    # Checks the certificate chain and the host name unless turned off below.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if mode == "require":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif rootcert in (None, "system"):
        context.load_default_certs()
    else:
        path = Path(rootcert).expanduser()
        if not path.is_file():
            raise ConfigError(f"DATABASE_URL sslrootcert {rootcert!r} is not a readable file")
        # Like libpq: only this file's CAs are trusted, not the system's.
        context.load_verify_locations(cafile=str(path))
    if mode == "verify-ca":
        context.check_hostname = False
    if (cert := query.get("sslcert")) is not None:
        try:
            context.load_cert_chain(cert, query.get("sslkey"))
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(f"DATABASE_URL sslcert/sslkey cannot be loaded: {error}") from None
    return context


def _single(name: str, value: str | tuple[str, ...]) -> str:
    if isinstance(value, tuple):
        raise ConfigError(f"DATABASE_URL parameter {name!r} is given more than once")
    return value


def _as_tuple(value: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else value


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(
            f"DATABASE_URL {name}={value!r} is not valid; use one of {', '.join(allowed)}"
        )
    return value


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0
    if not seconds > 0:
        raise ConfigError(
            f"DATABASE_URL connect_timeout={value!r} is not a positive number of seconds"
        )
    return seconds


def create_engine(settings: Settings) -> AsyncEngine:
    url, connect_args = parse_database_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    behind_pooler = uses_transaction_pooler(url, settings.db_pooler)
    server_settings: dict[str, str] = {"application_name": "todo-api"}
    if not behind_pooler:
        # Enforced by the server too, so a runaway statement stops even if the client is gone.
        # A transaction-mode pooler refuses unknown startup parameters (PgBouncer) or drops
        # them; there the client-side command_timeout is the limit (or set it on the role).
        statement_ms = int(settings.db_statement_timeout_seconds * 1000)
        server_settings["statement_timeout"] = str(statement_ms)
    server_settings |= connect_args.pop("server_settings", {})
    driver_args: dict[str, Any] = {
        "timeout": settings.db_connect_timeout_seconds,
        # Client-side limit on every statement; a little above the server's, so the server's
        # clean cancel normally wins and this one catches a server that stopped answering.
        "command_timeout": settings.db_statement_timeout_seconds + 1,
        "server_settings": server_settings,
        **connect_args,
    }
    if behind_pooler:
        # A transaction-mode pooler hands each transaction to any server connection: a statement
        # prepared on one is unknown on the next, and a reused name collides. So asyncpg and
        # SQLAlchemy keep no prepared-statement cache, and every statement gets a unique name.
        driver_args |= {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _unique_statement_name,
        }
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_recycle=settings.db_pool_recycle_seconds,
        connect_args=driver_args,
    )
    _check_on_checkout(
        engine,
        after_idle_seconds=settings.db_idle_check_seconds,
        within_seconds=settings.db_connect_timeout_seconds,
    )
    return engine


def single_statement_engine(engine: AsyncEngine, settings: Settings) -> AsyncEngine:
    """The engine for work done in one statement, atomic by itself.

    Such a statement is committed on its own, without the BEGIN and COMMIT round trips around
    it. Behind a transaction-mode pooler it keeps them: asyncpg prepares and executes in two
    round trips, which the pooler hands to different server connections unless a transaction
    holds them together.
    """
    url, _ = parse_database_url(settings.database_url)
    if url.get_backend_name() == "postgresql" and uses_transaction_pooler(url, settings.db_pooler):
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def _check_on_checkout(
    engine: AsyncEngine, *, after_idle_seconds: float, within_seconds: float
) -> None:
    """Check a pooled connection that has been idle before a request gets it.

    One dropped while idle (Neon scaling to zero, a pooler restart) is replaced by a new one,
    and the request does not fail. One that does not answer within `within_seconds` fails the
    request at once (503), instead of after the statement timeout. SQLAlchemy's pool_pre_ping
    does the first, but before every request, in three round trips (BEGIN, SELECT, ROLLBACK),
    waiting the whole statement timeout. Here a connection back in use within
    `after_idle_seconds` (every one, under load) is not checked at all; the check is one
    simple-protocol query, which needs no transaction and no prepared statement, so a
    transaction-mode pooler is fine with it. A connection that breaks while busy fails its
    request with a 503, and SQLAlchemy then replaces every connection of the pool.
    """

    async def ping(connection: Any) -> None:
        async with asyncio.timeout(within_seconds):
            await connection.execute("SELECT 1")

    @event.listens_for(engine.sync_engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < after_idle_seconds:
            return  # just opened, or just used
        try:
            dbapi_connection.run_async(ping)
        except TimeoutError:
            raise  # the pool discards the connection; the request answers 503
        except Exception as error:
            raise exc.DisconnectionError(f"connection dropped while idle: {error!r}") from error


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
    if isinstance(error, DatabaseNotReady):
        return True
    if isinstance(error, exc.OperationalError | exc.InterfaceError | exc.TimeoutError):
        return True
    if isinstance(error, OSError | TimeoutError):
        return True
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        sqlstate = _sqlstate(error)
        return sqlstate is not None and sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    return False


def misconfiguration(error: BaseException) -> str | None:
    """What to fix, when an error says the database refused these settings rather than that it
    is away; None for an outage. Start-up stops on these instead of waiting for them to pass."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"the database's TLS certificate did not verify ({error.verify_message}); "
            "check sslmode and sslrootcert in DATABASE_URL"
        )
    lines = str(getattr(error, "orig", None) or error).splitlines()
    message = lines[0] if lines else ""
    sqlstate = _sqlstate(error)
    # A pooler relays the server's refusal with its own SQLSTATE: the message tells.
    if (sqlstate is not None and sqlstate.startswith("28")) or _REFUSED_LOGIN.search(message):
        return f"the database refused the credentials in DATABASE_URL ({message})"
    if sqlstate == "3D000" or _MISSING_DATABASE.search(message):
        return f"{message}; check the database name in DATABASE_URL"
    if "rejected SSL upgrade" in message:
        return "the database does not accept TLS; check sslmode in DATABASE_URL"
    if "unsupported startup parameter" in message:
        return f"{message}: a transaction-mode pooler answers there; set DB_POOLER=transaction"
    return None


def _sqlstate(error: BaseException) -> str | None:
    orig = getattr(error, "orig", None) or error
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return sqlstate if isinstance(sqlstate, str) else None


async def ping(engine: AsyncEngine, within_seconds: float) -> None:
    """Raise unless the database answers a trivial query in time."""
    async with asyncio.timeout(within_seconds), engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
