"""The `todo-api` command: serve the API, apply migrations, mint a development token."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import sys
import time
from typing import Annotated

import typer
import uvicorn

from todo_api.auth import mint_token
from todo_api.database import (
    create_engine,
    is_unavailable,
    misconfiguration,
    parse_database_url,
    sqlite_file,
)
from todo_api.http.app import SCHEMA_READY_ENV
from todo_api.logs import configure_logging
from todo_api.migrations import upgrade
from todo_api.settings import ConfigError, Environment, Settings, load_settings

logger = logging.getLogger("todo_api.cli")

cli = typer.Typer(
    help="Tasks API for TODO web apps.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _settings(**overrides: object) -> Settings:
    try:
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
        parse_database_url(settings.database_url)  # refuse a malformed URL before anything starts
        return settings
    except ConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind [env HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [env PORT]")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes [env WORKERS]")] = None,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development)")] = False,
) -> None:
    """Apply pending migrations and serve the API (if the database is unreachable, serve anyway
    and migrate once it answers)."""
    settings = _settings(host=host, port=port, workers=workers)
    configure_logging(settings)
    if _migrate_in_child_process(settings):
        os.environ[SCHEMA_READY_ENV] = "1"  # inherited by the workers: no need to check again
    base = f"http://{settings.host}:{settings.port}"
    logger.info("Tasks API on %s  (interactive docs: %s/docs)", base, base)
    if settings.environment is Environment.LOCAL:
        logger.info(
            "Get a token:  todo-api token alice  (in a checkout: python3 dev.py token alice)"
        )
    uvicorn.run(
        "todo_api.http.app:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=None if reload else settings.workers,
        reload=reload,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=30,
        # A worker imports the app (FastAPI, SQLAlchemy, the MCP SDK...) before it is ready; on
        # a busy or small machine that can pass uvicorn's default of 5 s, after which uvicorn
        # kills the worker and starts another, forever. The same time bounds its liveness ping.
        timeout_worker_healthcheck=60,
    )


@cli.command()
def migrate() -> None:
    """Apply pending database migrations and exit."""
    settings = _settings()
    configure_logging(settings)
    _migrate_or_exit(settings)
    logger.info("Database schema is up to date")


@cli.command()
def token(
    user_id: Annotated[str, typer.Argument(help="The user id to put in the token's `sub`")],
    expires_in: Annotated[int, typer.Option(min=1, help="Lifetime in seconds")] = 3600,
) -> None:
    """Print an HS256 token for USER_ID, signed with the configured secret."""
    settings = _settings()
    if settings.better_auth_secret is None:
        typer.echo(
            "error: `token` signs HS256 tokens with BETTER_AUTH_SECRET, which is not set; "
            "with Better Auth (BETTER_AUTH_URL) the frontend gets tokens from GET /api/auth/token",
            err=True,
        )
        raise typer.Exit(2)
    typer.echo(mint_token(settings.better_auth_secret, user_id, expires_in=expires_in))


_MIGRATED, _UNREACHABLE = 0, 3  # exit codes of the start-up migration's process


def _migrate_in_child_process(settings: Settings) -> bool:
    """`_migrate_if_reachable` in a process of its own, so that Alembic (some 7 MB) is never
    loaded into a serving process. Whether the schema is now up to date."""
    child = multiprocessing.get_context("spawn").Process(
        target=_start_up_migration, args=(settings,), name="todo-api-migrate"
    )
    child.start()
    child.join()
    if child.exitcode not in (_MIGRATED, _UNREACHABLE):
        raise typer.Exit(child.exitcode or 1)  # the child has said why
    return child.exitcode == _MIGRATED


def _start_up_migration(settings: Settings) -> None:
    configure_logging(settings)
    try:
        migrated = _migrate_if_reachable(settings)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    sys.exit(_MIGRATED if migrated else _UNREACHABLE)


def _migrate_if_reachable(settings: Settings) -> bool:
    """One attempt before listening. Settings the database refuses stop start-up with one line;
    an unreachable database does not: each worker serves /health, answers 503 elsewhere, and
    applies the migrations as soon as the database appears."""
    _prepare_sqlite_folder(settings)
    try:
        asyncio.run(_migrate(settings, wait_seconds=0))
        return True
    except Exception as error:
        _exit_if_misconfigured(error)
        if not is_unavailable(error):
            raise
        logger.warning(
            "Database not reachable (%s); serving anyway: /health/ready answers 503 until it "
            "is, then migrations apply",
            _first_line(error),
        )
        return False


def _migrate_or_exit(settings: Settings) -> None:
    _prepare_sqlite_folder(settings)
    try:
        asyncio.run(_migrate(settings, wait_seconds=settings.db_startup_wait_seconds))
    except Exception as error:
        _exit_if_misconfigured(error)
        if not is_unavailable(error):
            raise
        typer.echo(
            f"error: the database did not answer within {settings.db_startup_wait_seconds:g}s "
            f"({_first_line(error)}); check DATABASE_URL",
            err=True,
        )
        raise typer.Exit(1) from None


def _prepare_sqlite_folder(settings: Settings) -> None:
    if (path := sqlite_file(settings)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def _exit_if_misconfigured(error: Exception) -> None:
    if (problem := misconfiguration(error)) is not None:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2) from None


def _first_line(error: BaseException) -> str:
    lines = str(error).splitlines()
    return f"{error.__class__.__name__}: {lines[0] if lines else ''}"


async def _migrate(settings: Settings, *, wait_seconds: float) -> None:
    """Migrate, retrying while the database is unreachable, for up to `wait_seconds`."""
    engine = create_engine(settings)
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                await upgrade(engine)
                return
            except Exception as error:
                if (
                    not is_unavailable(error)
                    or misconfiguration(error) is not None
                    or time.monotonic() >= deadline
                ):
                    raise
                logger.warning("Database not reachable yet (%s); retrying", error)
                await asyncio.sleep(1)
    finally:
        await engine.dispose()


def main() -> None:
    cli()
