"""Reminders: when an open task's remind_at passes, one `reminder` entry in its user's feed.

Delivering marks the task's `reminded_for` with the remind_at value it was for; the feed's
trigger turns that change into the task's reminder entry, not a change (the version stays). A
new remind_at re-arms it. Each process runs the delivery every second or so; on PostgreSQL
the due tasks are claimed with FOR UPDATE SKIP LOCKED, so whichever process claims a reminder
delivers it and no other does; SQLite runs one writer at a time. A reminder that came due
while no process ran is delivered by the first one back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.sql.dml import ReturningUpdate

from todo_api.database import StatementRunner
from todo_api.schema import REMINDER_PENDING, tasks

BATCH = 100

_due = (
    select(tasks.c.id)
    .where(REMINDER_PENDING, tasks.c.remind_at <= bindparam("now", type_=tasks.c.remind_at.type))
    .order_by(tasks.c.remind_at)
    .limit(BATCH)
    .with_for_update(skip_locked=True)
)
_DELIVER: ReturningUpdate[Any] = (
    update(tasks)
    .where(tasks.c.id.in_(_due.scalar_subquery()))
    .values(reminded_for=tasks.c.remind_at)
    .returning(tasks.c.id)
)


async def deliver_due_reminders(runner: StatementRunner, *, now: datetime) -> int:
    """Deliver every reminder due at `now`, a batch per statement; how many."""
    delivered = 0
    while True:
        batch = len(await runner.fetch_all(_DELIVER, {"now": now}))
        delivered += batch
        if batch < BATCH:
            return delivered
