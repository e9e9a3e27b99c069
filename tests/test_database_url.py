"""Connection strings as providers hand them out, turned into what asyncpg takes.

Pure translation tests; connecting with them is proven by the PostgreSQL passes of the suite,
directly and through a TLS transaction-mode PgBouncer.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.conftest import SECRET, make_settings
from tests.pgbouncer import PgBouncer, pgbouncer
from tests.server import run_cli, service_environment
from todo_api.database import (
    create_engine,
    misconfiguration,
    parse_database_url,
    uses_transaction_pooler,
)
from todo_api.settings import ConfigError, Pooler

NEON_DIRECT = (
    "postgresql://neondb_owner:npg_AbC123xYz@ep-cool-darkness-a1b2c3d4.eu-central-1.aws.neon.tech"
    "/neondb?sslmode=require&channel_binding=require"
)
NEON_POOLED = NEON_DIRECT.replace("a1b2c3d4.", "a1b2c3d4-pooler.")
PASSWORD = "npg_AbC123xYz"

__all__ = ["pgbouncer"]  # a fixture


def context_of(connect_args: dict[str, Any]) -> ssl.SSLContext:
    context = connect_args["ssl"]
    assert isinstance(context, ssl.SSLContext)
    return context


@pytest.mark.parametrize("url", [NEON_DIRECT, NEON_POOLED])
def test_neon_console_string_as_pasted(url: str) -> None:
    parsed, connect_args = parse_database_url(url)
    assert parsed.drivername == "postgresql+asyncpg"
    assert (parsed.username, parsed.password, parsed.database) == (
        "neondb_owner",
        PASSWORD,
        "neondb",
    )
    assert dict(parsed.query) == {}  # nothing left for asyncpg to reject
    context = context_of(connect_args)
    # libpq's `require`: encrypted, certificate not checked.
    assert context.verify_mode is ssl.CERT_NONE
    assert context.check_hostname is False


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+asyncpg"])
def test_every_postgres_scheme_means_asyncpg(scheme: str) -> None:
    parsed, connect_args = parse_database_url(f"{scheme}://u:p@db.example.com:5433/app")
    assert parsed.drivername == "postgresql+asyncpg"
    assert (parsed.host, parsed.port, parsed.database) == ("db.example.com", 5433, "app")
    assert connect_args == {}


def test_verify_full_checks_chain_and_host_name_against_system_cas() -> None:
    _, connect_args = parse_database_url(NEON_DIRECT.replace("require&", "verify-full&"))
    context = context_of(connect_args)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.cert_store_stats()["x509_ca"] > 0  # the system's CAs


def test_verify_ca_checks_the_chain_only(tmp_path: Path) -> None:
    root = self_signed_certificate(tmp_path)
    _, connect_args = parse_database_url(
        f"postgresql://u@h/db?sslmode=verify-ca&sslrootcert={root}"
    )
    context = context_of(connect_args)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is False
    assert context.cert_store_stats()["x509_ca"] == 1


def test_require_with_a_root_certificate_verifies_like_libpq(tmp_path: Path) -> None:
    root = self_signed_certificate(tmp_path)
    _, connect_args = parse_database_url(f"postgresql://u@h/db?sslmode=require&sslrootcert={root}")
    assert context_of(connect_args).verify_mode is ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("mode", "expected"), [("disable", False), ("allow", "allow"), ("prefer", "prefer")]
)
def test_modes_that_allow_plain_text(mode: str, expected: object) -> None:
    _, connect_args = parse_database_url(f"postgresql://u@h/db?sslmode={mode}")
    assert connect_args["ssl"] == expected


def test_special_characters_in_the_password_percent_encoded() -> None:
    password = "p@ss:w/o#rd?%&="
    encoded = "p%40ss%3Aw%2Fo%23rd%3F%25%26%3D"
    parsed, _ = parse_database_url(f"postgresql://app%40team:{encoded}@h.example.com/db")
    assert parsed.username == "app@team"
    assert parsed.password == password


def test_options_application_name_and_connect_timeout_reach_the_driver() -> None:
    url = (
        NEON_DIRECT
        + "&options=endpoint%3Dep-cool-darkness-a1b2c3d4&application_name=tasks-web"
        + "&connect_timeout=10&target_session_attrs=read-write"
    )
    _, connect_args = parse_database_url(url)
    assert connect_args["server_settings"] == {
        "options": "endpoint=ep-cool-darkness-a1b2c3d4",
        "application_name": "tasks-web",
    }
    assert connect_args["timeout"] == 10
    assert connect_args["target_session_attrs"] == "read-write"


def test_direct_tls_negotiation() -> None:
    _, connect_args = parse_database_url(NEON_DIRECT + "&sslnegotiation=direct")
    assert connect_args["direct_tls"] is True


def test_several_hosts_stay_for_the_driver() -> None:
    parsed, _ = parse_database_url("postgresql://u@/db?host=a.example.com:5432&host=b.example.com")
    assert parsed.query["host"] == ("a.example.com:5432", "b.example.com")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://u:p@h/db", "scheme 'mysql' is not supported"),
        ("postgresql+psycopg://u:p@h/db", "not supported"),
        ("postgresql://u:p@/db", "no host name"),
        ("postgresql://u:p@h", "no database name"),
        ("postgresql://u:p@h/db?sslmode=required", "sslmode='required' is not valid"),
        ("postgresql://u:p@h/db?channel_binding=yes", "channel_binding='yes' is not valid"),
        ("postgresql://u:p@h/db?sslmode=require&foo=1", "parameter 'foo' is not supported"),
        ("postgresql://u:p@h/db?gssencmode=prefer", "parameter 'gssencmode' is not supported"),
        ("postgresql://u:p@h/db?sslmode=require&sslmode=disable", "more than once"),
        ("postgresql://u:p@h/db?connect_timeout=soon", "connect_timeout='soon'"),
        ("postgresql://u:p@h/db?sslmode=verify-full&sslrootcert=/nonexistent.crt", "sslrootcert"),
        ("postgresql://u:p@h/db?sslrootcert=/etc/root.crt", "no sslmode"),
        ("postgresql://u:p@h/db?sslnegotiation=direct", "needs sslmode=require"),
    ],
)
def test_unusable_strings_say_what_is_wrong(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_database_url(url)
    message = str(raised.value)
    assert fragment in message
    assert "\n" not in message
    assert message.startswith("DATABASE_URL")


def test_unencoded_at_sign_in_the_password_is_explained_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_database_url("postgresql://user:s3cr@t-pass@db.example.com/db")
    assert "%40" in str(raised.value)
    assert "s3cr" not in str(raised.value)
    assert "t-pass" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "pooler", "expected"),
    [
        (NEON_POOLED, Pooler.AUTO, True),
        (NEON_DIRECT, Pooler.AUTO, False),
        (NEON_DIRECT, Pooler.TRANSACTION, True),
        (NEON_POOLED, Pooler.NONE, False),
        ("postgresql://u@db-pooler.internal:6432/db", Pooler.AUTO, True),
        ("postgresql://u@db.internal-pooler.example.com/db", Pooler.AUTO, False),
    ],
)
def test_transaction_pooler_detection(url: str, pooler: Pooler, expected: bool) -> None:
    parsed, _ = parse_database_url(url)
    assert uses_transaction_pooler(parsed, pooler) is expected


def test_behind_a_transaction_pooler_no_statement_is_cached_or_reused() -> None:
    arguments = connect_arguments(NEON_POOLED)
    assert arguments["statement_cache_size"] == 0
    assert arguments["prepared_statement_cache_size"] == 0
    names = {arguments["prepared_statement_name_func"]() for _ in range(100)}
    assert len(names) == 100
    # PgBouncer refuses startup parameters it does not know: only the name is sent.
    assert arguments["server_settings"] == {"application_name": "todo-api"}
    assert arguments["command_timeout"] == 6


def test_direct_connections_keep_the_cache_and_a_server_side_statement_timeout() -> None:
    arguments = connect_arguments(NEON_DIRECT, db_statement_timeout_seconds=7)
    assert "statement_cache_size" not in arguments
    assert arguments["server_settings"]["statement_timeout"] == "7000"
    assert arguments["command_timeout"] == 8
    assert arguments["timeout"] == 5


def connect_arguments(url: str, **settings: Any) -> dict[str, Any]:
    """The keyword arguments the engine hands to the driver's connect for `url`."""
    # The pooler is detected from the URL here, whatever DB_POOLER the test run has.
    engine = create_engine(make_settings(url, **({"db_pooler": Pooler.AUTO} | settings)))
    captured: dict[str, Any] = {}

    @event.listens_for(engine.sync_engine, "do_connect")
    def capture(_dialect: Any, _record: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        captured.update(kwargs)
        raise _Captured

    with pytest.raises(_Captured):
        engine.sync_engine.raw_connection()
    return captured


class _Captured(Exception):
    pass


def self_signed_certificate(folder: Path) -> Path:
    path = folder / "root.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test",
            "-keyout",
            str(folder / "root.key"),
            "-out",
            str(path),
        ],
        check=True,
        capture_output=True,
    )
    return path


@pytest.mark.parametrize(
    ("error", "fragment"),
    [
        (ConnectionError('PostgreSQL server at "h:5432" rejected SSL upgrade'), "accept TLS"),
        (ConnectionRefusedError(111, "Connect call failed"), None),
        (TimeoutError(), None),
    ],
)
def test_refusals_are_told_apart_from_outages(error: Exception, fragment: str | None) -> None:
    problem = misconfiguration(error)
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None
        assert fragment in problem


# --- The same strings against a real TLS transaction-mode PgBouncer, through the CLI ----------


def test_neon_style_string_with_every_parameter_starts_the_service(
    pgbouncer: PgBouncer, database_url: str, tmp_path: Path
) -> None:
    parameters = (
        f"sslmode=verify-full&sslrootcert={pgbouncer.certificate}&channel_binding=require"
        "&options=endpoint%3Dep-cool-darkness-a1b2c3d4&application_name=tasks-web"
        "&connect_timeout=5"
    )
    env = service_environment(
        DATABASE_URL=pgbouncer.url(str(make_url(database_url).database), parameters),
        BETTER_AUTH_SECRET=SECRET,
        DB_POOLER="transaction",
    )
    result = run_cli("migrate", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("command", "database", "parameters", "pooler", "fragment"),
    [
        ("serve", "test", "sslmode=require", "auto", "set DB_POOLER=transaction"),
        ("migrate", "test", "sslmode=verify-full", "transaction", "certificate did not verify"),
        ("migrate", "no_such_db", "sslmode=require", "transaction", "database name"),
    ],
)
def test_settings_the_database_refuses_stop_start_up_with_one_line(
    pgbouncer: PgBouncer,
    tmp_path: Path,
    command: str,
    database: str,
    parameters: str,
    pooler: str,
    fragment: str,
) -> None:
    env = service_environment(
        DATABASE_URL=pgbouncer.url(database, parameters),
        BETTER_AUTH_SECRET=SECRET,
        DB_POOLER=pooler,
    )
    result = run_cli(command, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert fragment in errors[0]
    assert "Traceback" not in result.stderr


async def test_the_pooler_setting_is_what_makes_pgbouncer_work(
    pgbouncer: PgBouncer, database_url: str
) -> None:
    """The control experiment: asyncpg's defaults (statements cached per connection) break
    behind a transaction-mode PgBouncer; the same traffic with DB_POOLER=transaction does not."""
    url = pgbouncer.url(str(make_url(database_url).database))

    async def traffic(engine: AsyncEngine) -> None:
        async def transaction(n: int) -> None:
            async with engine.begin() as connection:
                await connection.execute(text("SELECT CAST(:n AS int) + 1"), {"n": n})
                await connection.execute(text("SELECT CAST(:n AS int) + 2"), {"n": n})

        for _ in range(5):
            await asyncio.gather(*(transaction(n) for n in range(40)))

    parsed, connect_args = parse_database_url(url)
    cached = create_async_engine(parsed, connect_args=connect_args, pool_size=5, max_overflow=0)
    try:
        with pytest.raises(DBAPIError, match="prepared statement"):
            await traffic(cached)
    finally:
        await cached.dispose()

    safe = create_engine(make_settings(url, db_pooler=Pooler.TRANSACTION, db_pool_size=5))
    try:
        await traffic(safe)
    finally:
        await safe.dispose()
