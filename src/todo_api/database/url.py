"""Connection strings as users paste them: libpq's parameters become asyncpg's arguments."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import URL, make_url

from todo_api.settings import ConfigError, Pooler

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
