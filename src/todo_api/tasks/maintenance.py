"""Forgetting what the sync features no longer need: old tombstones, expired idempotency keys.

Run by every server process now and then (todo_api.jobs); any number of them may run it at
once, and running it twice does no harm.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, case, delete, func, select, update
from sqlalchemy.sql.dml import ReturningDelete, ReturningUpdate

from todo_api.database import StatementRunner
from todo_api.schema import idempotency_keys, task_counts, task_feed

IDEMPOTENCY_KEY_LIFETIME = timedelta(hours=24)

_BEFORE = bindparam("before", type_=task_feed.c.changed_at.type)
_OLD_TOMBSTONE = (task_feed.c.deleted, task_feed.c.changed_at < _BEFORE)

_newest_old_tombstone = (
    select(func.max(task_feed.c.seq))
    .where(task_feed.c.user_id == task_counts.c.user_id, *_OLD_TOMBSTONE)
    .scalar_subquery()
)
# First the mark, then the deletion: a cursor from before a forgotten tombstone is refused
# (410) from the mark on, so no reader ever passes a deletion it was not shown. Stopped in
# between, the next run deletes what the mark already covers.
_MARK_PRUNED: ReturningUpdate[tuple[str]] = (
    update(task_counts)
    .where(task_counts.c.user_id.in_(select(task_feed.c.user_id).where(*_OLD_TOMBSTONE)))
    .values(
        pruned_seq=case(
            (_newest_old_tombstone > task_counts.c.pruned_seq, _newest_old_tombstone),
            else_=task_counts.c.pruned_seq,
        )
    )
    .returning(task_counts.c.user_id)
)
_DELETE_TOMBSTONES: ReturningDelete[tuple[str]] = (
    delete(task_feed).where(*_OLD_TOMBSTONE).returning(task_feed.c.user_id)
)
_DELETE_KEYS: ReturningDelete[tuple[str]] = (
    delete(idempotency_keys)
    .where(idempotency_keys.c.created_at < bindparam("keys_before"))
    .returning(idempotency_keys.c.user_id)
)


async def prune(runner: StatementRunner, *, now: datetime, tombstone_age: timedelta) -> int:
    """Forget tombstones older than `tombstone_age` and idempotency keys older than a day; how
    many rows went."""
    params = {"before": now - tombstone_age}
    await runner.fetch_all(_MARK_PRUNED, params)
    tombstones = await runner.fetch_all(_DELETE_TOMBSTONES, params)
    keys = await runner.fetch_all(_DELETE_KEYS, {"keys_before": now - IDEMPOTENCY_KEY_LIFETIME})
    return len(tombstones) + len(keys)
