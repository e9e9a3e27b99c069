"""Fault triage: which errors mean "the database is away" (503) or "fix your settings"."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass

import asyncpg
from sqlalchemy import exc

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


# What the engine and the request pool raise when a statement fails, for error handlers to triage.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    exc.DBAPIError,
    exc.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,  # TimeoutError among them
    DatabaseNotReady,
)


def is_unavailable(error: BaseException) -> bool:
    """Whether an error means the database cannot be reached now (503), not a bug (500).

    Errors come wrapped by SQLAlchemy (the engine) or straight from asyncpg (the request pool).
    """
    if isinstance(error, DatabaseNotReady):
        return True
    if isinstance(error, exc.OperationalError | exc.InterfaceError | exc.TimeoutError):
        return True
    # asyncpg's InterfaceError: the connection or the pool is closed under the statement.
    if isinstance(error, OSError | TimeoutError | asyncpg.InterfaceError):
        return True
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    sqlstate = _sqlstate(error)
    if sqlstate is not None and sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
        return True
    # Refused settings (a password rotated under a running service, say) are the operator's to
    # fix, not the client's: the request gets 503 and the log says what to fix.
    return misconfiguration(error) is not None


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
