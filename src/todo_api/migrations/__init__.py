"""Alembic migrations, applied with `todo-api migrate` or at `todo-api serve` start-up."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from todo_api.database import DatabaseState, is_unavailable

logger = logging.getLogger(__name__)

# Alembic is imported only when a migration runs: every worker process of `serve` imports this
# module, and Alembic would add about 10 MB to each of them.
if TYPE_CHECKING:
    from alembic.config import Config

# Any constant works; it only has to be the same for every process running migrations.
_POSTGRES_LOCK_ID = 7_464_025_310


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision; safe when several processes start at once."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


async def try_upgrade(engine: AsyncEngine, state: DatabaseState) -> bool:
    """One attempt to upgrade; on success `state` is marked migrated, which opens the API."""
    try:
        await upgrade(engine)
    except Exception as error:
        if not is_unavailable(error):
            logger.exception("Migrations failed; /health/ready answers 503")
            return False
        logger.warning(
            "Database not reachable (%s: %s); /health/ready answers 503 until it is",
            error.__class__.__name__,
            str(error).splitlines()[0] if str(error) else "",
        )
        return False
    state.migrated = True
    logger.info("Database schema is up to date")
    return True


async def upgrade_when_reachable(
    engine: AsyncEngine, state: DatabaseState, *, max_delay_seconds: float = 10
) -> None:
    """Retry `try_upgrade` with a growing delay until the database answers and it succeeds."""
    delay = 0.5
    while True:
        await asyncio.sleep(delay)
        if await try_upgrade(engine, state):
            return
        delay = min(delay * 2, max_delay_seconds)


def _upgrade(connection: Connection) -> None:
    from alembic import command

    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _POSTGRES_LOCK_ID})
    command.upgrade(alembic_config(connection), "head")


async def is_current(engine: AsyncEngine) -> bool:
    """Whether the database is at the newest revision."""
    async with engine.connect() as connection:
        return await connection.run_sync(_is_current)


def _is_current(connection: Connection) -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return MigrationContext.configure(connection).get_current_revision() == head
