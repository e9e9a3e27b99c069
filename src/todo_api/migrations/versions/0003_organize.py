"""Priorities, tags, due dates, reminders, recurrence, versions; the indexes the list needs.

Existing tasks get priority medium, no tags, no dates, no recurrence, time zone UTC, version 1,
and their folded title and search text (computed here with the same `str.casefold` the service
uses on every write).

On PostgreSQL the search column gets a trigram index (pg_trgm) when the extension can be
created; when it cannot, the migration succeeds without it and says so in one log line.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from todo_api.schema import SEARCH_INDEX, CodePointText, UTCDateTime
from todo_api.tasks.text import search_text, title_key

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("todo_api.migrations")

TaskId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BACKFILL_BATCH = 1000

NEW_COLUMNS: list[sa.Column[Any]] = [
    sa.Column("priority", sa.SmallInteger(), nullable=False, server_default="2"),
    sa.Column("tags", sa.String(1020), nullable=False, server_default=""),
    sa.Column("due_at", UTCDateTime(), nullable=True),
    sa.Column("remind_at", UTCDateTime(), nullable=True),
    sa.Column("recurrence", sa.String(500), nullable=True),
    sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
    sa.Column("completed_at", UTCDateTime(), nullable=True),
    sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("occurrence", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("previous_id", TaskId, nullable=True),
    sa.Column("title_key", CodePointText, nullable=False, server_default=""),
    sa.Column("search_text", sa.Text(), nullable=False, server_default=""),
]
NEW_INDEXES = {
    "ix_tasks_user_id_updated_at_id": ["user_id", "updated_at", "id"],
    "ix_tasks_user_id_due_at_id": ["user_id", "due_at", "id"],
    "ix_tasks_user_id_priority_id": ["user_id", "priority", "id"],
    "ix_tasks_user_id_title_key_id": ["user_id", "title_key", "id"],
}


def upgrade() -> None:
    # Plain ADD COLUMN on SQLite too (no table rebuild), so the task_counts triggers stay.
    for column in NEW_COLUMNS:
        op.add_column("tasks", column)
    _backfill_folded_text()
    # A completed task's completion time is unknown; its last change is the best estimate.
    op.execute("UPDATE tasks SET completed_at = updated_at WHERE completed")
    for name, columns in NEW_INDEXES.items():
        op.create_index(name, "tasks", columns)
    op.create_index("uq_tasks_previous_id", "tasks", ["previous_id"], unique=True)
    op.create_table(
        "task_tags",
        sa.Column(
            "task_id",
            TaskId,
            sa.ForeignKey("tasks.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tag", sa.String(50), primary_key=True),
        sa.Column("user_id", sa.String(255), nullable=False),
    )
    op.create_index("ix_task_tags_user_id_tag_task_id", "task_tags", ["user_id", "tag", "task_id"])
    if op.get_bind().dialect.name == "postgresql":
        _create_search_index()


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {SEARCH_INDEX}")
    op.drop_table("task_tags")
    op.drop_index("uq_tasks_previous_id", "tasks")
    for name in NEW_INDEXES:
        op.drop_index(name, "tasks")
    for column in reversed(NEW_COLUMNS):
        op.drop_column("tasks", column.name)


def _backfill_folded_text() -> None:
    connection = op.get_bind()
    tasks = sa.table(
        "tasks",
        sa.column("id", TaskId),
        sa.column("title", sa.String()),
        sa.column("description", sa.String()),
        sa.column("title_key", sa.Text()),
        sa.column("search_text", sa.Text()),
    )
    fill = (
        sa.update(tasks)
        .where(tasks.c.id == sa.bindparam("task_id"))
        .values(title_key=sa.bindparam("key"), search_text=sa.bindparam("text"))
    )
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(tasks.c.id, tasks.c.title, tasks.c.description)
            .where(tasks.c.id > last_id)
            .order_by(tasks.c.id)
            .limit(BACKFILL_BATCH)
        ).all()
        if not rows:
            return
        connection.execute(
            fill,
            [
                {
                    "task_id": row.id,
                    "key": title_key(row.title),
                    "text": search_text(row.title, row.description),
                }
                for row in rows
            ],
        )
        last_id = rows[-1].id


def _create_search_index() -> None:
    """A trigram index for `q`, in a savepoint: a database where the extension cannot be
    created (no privilege, not offered) keeps everything else this revision did."""
    connection = op.get_bind()
    savepoint = connection.begin_nested()
    try:
        connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        connection.exec_driver_sql(
            f"CREATE INDEX {SEARCH_INDEX} ON tasks USING gin (search_text gin_trgm_ops)"
        )
    except sa.exc.DBAPIError as error:
        savepoint.rollback()
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        logger.warning(
            "pg_trgm is not available (%s): search works without its index, scanning each "
            "user's tasks; to add it, run CREATE EXTENSION pg_trgm as a privileged user and "
            "then CREATE INDEX %s ON tasks USING gin (search_text gin_trgm_ops)",
            reason,
            SEARCH_INDEX,
        )
    else:
        savepoint.commit()
