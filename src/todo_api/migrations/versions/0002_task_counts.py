"""Per-user task counts, kept by the database on every write.

A list answers with `X-Total-Count`; counting the matching rows at read time costs in
proportion to the user's tasks (0.4 ms of database time for 10,000). The counts are kept
instead by triggers on `tasks`, in the same transaction as the write that changes them, so
they are exact whatever writes the table: the service, a script, an operator's SQL.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A task's user never changes (no request can move a task), so only inserts, deletes and
# changes of `completed` move the counts.
POSTGRES_TRIGGERS = [
    """
    CREATE FUNCTION task_counts_follow() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO task_counts AS counts (user_id, total, completed)
            VALUES (NEW.user_id, 1, NEW.completed::int)
            ON CONFLICT (user_id) DO UPDATE
                SET total = counts.total + 1,
                    completed = counts.completed + EXCLUDED.completed;
        ELSIF TG_OP = 'DELETE' THEN
            UPDATE task_counts
                SET total = total - 1, completed = completed - OLD.completed::int
                WHERE user_id = OLD.user_id;
        ELSIF NEW.completed IS DISTINCT FROM OLD.completed THEN
            UPDATE task_counts
                SET completed = completed + NEW.completed::int - OLD.completed::int
                WHERE user_id = NEW.user_id;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER task_counts_follow
        AFTER INSERT OR DELETE OR UPDATE OF completed ON tasks
        FOR EACH ROW EXECUTE FUNCTION task_counts_follow()
    """,
]
POSTGRES_DROP = [
    "DROP TRIGGER IF EXISTS task_counts_follow ON tasks",
    "DROP FUNCTION IF EXISTS task_counts_follow()",
]

SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks BEGIN
        INSERT INTO task_counts (user_id, total, completed)
        VALUES (NEW.user_id, 1, NEW.completed)
        ON CONFLICT (user_id) DO UPDATE
            SET total = total + 1, completed = completed + excluded.completed;
    END
    """,
    """
    CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks BEGIN
        UPDATE task_counts SET total = total - 1, completed = completed - OLD.completed
            WHERE user_id = OLD.user_id;
    END
    """,
    """
    CREATE TRIGGER task_counts_complete AFTER UPDATE OF completed ON tasks
        WHEN NEW.completed IS NOT OLD.completed BEGIN
        UPDATE task_counts SET completed = completed + NEW.completed - OLD.completed
            WHERE user_id = NEW.user_id;
    END
    """,
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS task_counts_insert",
    "DROP TRIGGER IF EXISTS task_counts_delete",
    "DROP TRIGGER IF EXISTS task_counts_complete",
]


def upgrade() -> None:
    op.create_table(
        "task_counts",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("total", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("completed", sa.BigInteger(), nullable=False, server_default="0"),
    )
    # Counted under the migration's transaction, before the triggers exist: with PostgreSQL
    # the table lock makes writes wait until the triggers are in place, so none is missed.
    if _is_postgres():
        op.execute("LOCK TABLE tasks IN SHARE MODE")
    op.execute(
        """
        INSERT INTO task_counts (user_id, total, completed)
        SELECT user_id, count(*), sum(CASE WHEN completed THEN 1 ELSE 0 END)
        FROM tasks GROUP BY user_id
        """
    )
    for statement in POSTGRES_TRIGGERS if _is_postgres() else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    for statement in POSTGRES_DROP if _is_postgres() else SQLITE_DROP:
        op.execute(statement)
    op.drop_table("task_counts")


def _is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"
