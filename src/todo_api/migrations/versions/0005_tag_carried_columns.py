"""Tag rows carry their task's priority, due date and creation time.

A list filtered by tag was answered by looking up every task carrying the tag, once for the page
and once for its total. With the columns the filters and sorts read copied into `task_tags`, a
tag filter combined with `priority`, the due-date filters and the `created_at`, `due_at` and
`priority` sorts is counted and ordered from the tag index alone (docs/api.md, "Listing").

The copies are filled from `tasks` here, written by the service with every tag row, and kept in
step by a trigger on `tasks` for every change of those columns, whatever makes it. Every tag row
is kept.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from todo_api.schema import UTCDateTime

revision: str = "0005"
# Touches nothing revision 0004 (the change feed) made: the two could come in either order.
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_INDEX = "ix_task_tags_user_id_tag_task_id"
NEW_INDEX = "ix_task_tags_user_id_tag_task_id_carried"
CARRIED: list[tuple[str, Any, bool]] = [  # name, type, nullable
    ("priority", sa.SmallInteger(), False),
    ("due_at", UTCDateTime(), True),
    ("created_at", UTCDateTime(), False),
]

# Only a change of a carried column moves the copies; a toggle or a title change does not
# fire the trigger at all (UPDATE OF), and a write that sets them unchanged skips it (WHEN).
POSTGRES_TRIGGERS = [
    """
    CREATE FUNCTION task_tags_follow() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE task_tags
            SET priority = NEW.priority, due_at = NEW.due_at, created_at = NEW.created_at
            WHERE task_id = NEW.id;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER task_tags_follow
        AFTER UPDATE OF priority, due_at, created_at ON tasks
        FOR EACH ROW
        WHEN (OLD.priority IS DISTINCT FROM NEW.priority
              OR OLD.due_at IS DISTINCT FROM NEW.due_at
              OR OLD.created_at IS DISTINCT FROM NEW.created_at)
        EXECUTE FUNCTION task_tags_follow()
    """,
]
POSTGRES_DROP = [
    "DROP TRIGGER IF EXISTS task_tags_follow ON tasks",
    "DROP FUNCTION IF EXISTS task_tags_follow()",
]
SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER task_tags_follow AFTER UPDATE OF priority, due_at, created_at ON tasks
        WHEN NEW.priority IS NOT OLD.priority
             OR NEW.due_at IS NOT OLD.due_at
             OR NEW.created_at IS NOT OLD.created_at
    BEGIN
        UPDATE task_tags
            SET priority = NEW.priority, due_at = NEW.due_at, created_at = NEW.created_at
            WHERE task_id = NEW.id;
    END
    """,
]
SQLITE_DROP = ["DROP TRIGGER IF EXISTS task_tags_follow"]

# The same value is copied as stored, so the copies compare exactly like the originals.
BACKFILL = """
UPDATE task_tags SET
    priority = (SELECT tasks.priority FROM tasks WHERE tasks.id = task_tags.task_id),
    due_at = (SELECT tasks.due_at FROM tasks WHERE tasks.id = task_tags.task_id),
    created_at = (SELECT tasks.created_at FROM tasks WHERE tasks.id = task_tags.task_id)
"""


def upgrade() -> None:
    postgres = _is_postgres()
    # Writes of tasks wait until the triggers are in place, so no change is missed between the
    # copy and the trigger (the whole revision is one transaction on PostgreSQL).
    if postgres:
        op.execute("LOCK TABLE tasks IN SHARE MODE")
    for name, type_, _ in CARRIED:
        op.add_column("task_tags", sa.Column(name, type_, nullable=True))
    op.execute(BACKFILL)
    # SQLite cannot add a NOT NULL constraint to a column: batch mode copies the table.
    with op.batch_alter_table("task_tags") as batch:
        for name, type_, nullable in CARRIED:
            if not nullable:
                batch.alter_column(name, existing_type=type_, nullable=False)
    op.drop_index(OLD_INDEX, "task_tags")
    op.create_index(
        NEW_INDEX, "task_tags", ["user_id", "tag", "task_id", *(name for name, _, _ in CARRIED)]
    )
    for statement in POSTGRES_TRIGGERS if postgres else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    for statement in POSTGRES_DROP if _is_postgres() else SQLITE_DROP:
        op.execute(statement)
    op.drop_index(NEW_INDEX, "task_tags")
    op.create_index(OLD_INDEX, "task_tags", ["user_id", "tag", "task_id"])
    with op.batch_alter_table("task_tags") as batch:
        for name, _, _ in reversed(CARRIED):
            batch.drop_column(name)


def _is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"
