"""What each server process does beside answering requests: waking its live streams when their
users' feeds move, delivering due reminders, and pruning the feed and the idempotency keys.

Every job keeps going through database outages (a failure is logged once, then retried) and
waits for the schema to be migrated before it touches the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from todo_api.database import DatabaseState, StatementRunner
from todo_api.live.hub import StreamHub
from todo_api.live.wakeups import wakeup_source
from todo_api.settings import Settings
from todo_api.tasks.maintenance import prune
from todo_api.tasks.reminders import deliver_due_reminders

logger = logging.getLogger("todo_api.jobs")


@asynccontextmanager
async def background_jobs(
    settings: Settings,
    engine: AsyncEngine,
    runner: StatementRunner,
    streams: StreamHub,
    database: DatabaseState,
) -> AsyncIterator[None]:
    """Run the jobs while the block runs; they are cancelled when it ends."""
    tombstone_age = timedelta(days=settings.feed_tombstone_days)

    async def prune_now() -> None:
        removed = await prune(runner, now=datetime.now(UTC), tombstone_age=tombstone_age)
        if removed:
            logger.info("Pruned %d old feed tombstones and idempotency keys", removed)

    async def remind_now() -> None:
        await deliver_due_reminders(runner, now=datetime.now(UTC))

    jobs = [
        wakeup_source(settings, engine, streams).run(),
        _every(settings.reminder_interval_seconds, remind_now, database, "Delivering reminders"),
        _every(settings.maintenance_interval_seconds, prune_now, database, "Pruning"),
    ]
    running = [asyncio.create_task(job) for job in jobs]
    try:
        yield
    finally:
        for task in running:
            task.cancel()
        for task in running:
            with suppress(asyncio.CancelledError):
                await task


async def _every(
    seconds: float, job: Callable[[], Awaitable[None]], database: DatabaseState, name: str
) -> None:
    failing = False
    while True:
        if database.migrated:
            try:
                await job()
            except Exception as error:
                if not failing:
                    logger.warning("%s failed (%r); trying again every %gs", name, error, seconds)
                failing = True
            else:
                if failing:
                    logger.info("%s works again", name)
                failing = False
        await asyncio.sleep(seconds)
