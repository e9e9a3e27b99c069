"""The change feed, idempotency keys and reminder delivery.

Every write of `tasks` now also numbers itself in the user's row of `task_counts` and moves the
task's entry in `task_feed` to that number (one trigger, replacing revision 0002's, which kept
the counts only): docs/sync.md explains why the numbers follow the commit order. On
PostgreSQL the trigger also sends a notification naming the user (delivered at commit), which
wakes that user's live streams in every server process.

Existing tasks enter the feed numbered 1, 2, ... per user in the order of their ids, each
user's row gets its cursor-signing key, and no reminder counts as delivered yet.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

# The SQL below is put together from this file's constants only.
# ruff: noqa: S608

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

from todo_api.schema import REMINDER_PENDING, UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TaskId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Two statements per written row: the user's counts and next change number (the row lock that
# orders the feed), then the task's feed entry. A reminder being delivered changes only
# `reminded_for`: it is numbered like a change but recorded as the task's reminder entry.
POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION task_counts_follow() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    owner text;
    task bigint;
    number bigint;
    entry text := 'change';
BEGIN
    IF TG_OP = 'INSERT' THEN
        owner := NEW.user_id;
        task := NEW.id;
        INSERT INTO task_counts AS counts (user_id, total, completed, change_seq, feed_key)
        VALUES (NEW.user_id, 1, NEW.completed::int, 1, gen_random_uuid()::text)
        ON CONFLICT (user_id) DO UPDATE
            SET total = counts.total + 1,
                completed = counts.completed + EXCLUDED.completed,
                change_seq = counts.change_seq + 1
        RETURNING change_seq INTO number;
    ELSIF TG_OP = 'DELETE' THEN
        owner := OLD.user_id;
        task := OLD.id;
        UPDATE task_counts
            SET total = total - 1,
                completed = completed - OLD.completed::int,
                change_seq = change_seq + 1
            WHERE user_id = OLD.user_id
        RETURNING change_seq INTO number;
        DELETE FROM task_feed
            WHERE user_id = OLD.user_id AND task_id = OLD.id AND kind = 'reminder';
    ELSE
        owner := NEW.user_id;
        task := NEW.id;
        UPDATE task_counts
            SET completed = completed + NEW.completed::int - OLD.completed::int,
                change_seq = change_seq + 1
            WHERE user_id = NEW.user_id
        RETURNING change_seq INTO number;
        IF NEW.reminded_for IS DISTINCT FROM OLD.reminded_for THEN
            entry := 'reminder';
        END IF;
    END IF;
    INSERT INTO task_feed AS feed (user_id, task_id, kind, seq, deleted, changed_at)
    VALUES (owner, task, entry, number, TG_OP = 'DELETE', now())
    ON CONFLICT (user_id, task_id, kind) DO UPDATE
        SET seq = EXCLUDED.seq, deleted = EXCLUDED.deleted, changed_at = EXCLUDED.changed_at;
    PERFORM pg_notify('task_changes', owner);
    RETURN NULL;
END
$$
"""
POSTGRES_TRIGGER = [
    "DROP TRIGGER task_counts_follow ON tasks",
    """
    CREATE TRIGGER task_counts_follow
        AFTER INSERT OR DELETE OR UPDATE ON tasks
        FOR EACH ROW EXECUTE FUNCTION task_counts_follow()
    """,
]

_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"


def _sqlite_feed_entry(row: str, kind: str, deleted: int) -> str:
    return f"""
        INSERT INTO task_feed (user_id, task_id, kind, seq, deleted, changed_at)
        VALUES ({row}.user_id, {row}.id, {kind},
                (SELECT change_seq FROM task_counts WHERE user_id = {row}.user_id),
                {deleted}, {_SQLITE_NOW})
        ON CONFLICT (user_id, task_id, kind) DO UPDATE
            SET seq = excluded.seq, deleted = excluded.deleted, changed_at = excluded.changed_at;
    """


_SQLITE_UPDATE_KIND = (
    "CASE WHEN NEW.reminded_for IS NOT OLD.reminded_for THEN 'reminder' ELSE 'change' END"
)

# SQLite runs one writer at a time, so the number needs no lock; the triggers mirror the above.
# Built from constants only.
SQLITE_TRIGGERS = [
    f"""
    CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks BEGIN
        INSERT INTO task_counts (user_id, total, completed, change_seq, feed_key)
        VALUES (NEW.user_id, 1, NEW.completed, 1, lower(hex(randomblob(16))))
        ON CONFLICT (user_id) DO UPDATE
            SET total = total + 1,
                completed = completed + excluded.completed,
                change_seq = change_seq + 1;
        {_sqlite_feed_entry("NEW", "'change'", 0)}
    END
    """,
    f"""
    CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks BEGIN
        UPDATE task_counts
            SET total = total - 1, completed = completed - OLD.completed,
                change_seq = change_seq + 1
            WHERE user_id = OLD.user_id;
        {_sqlite_feed_entry("OLD", "'change'", 1)}
        DELETE FROM task_feed
            WHERE user_id = OLD.user_id AND task_id = OLD.id AND kind = 'reminder';
    END
    """,
    f"""
    CREATE TRIGGER task_counts_update AFTER UPDATE ON tasks BEGIN
        UPDATE task_counts
            SET completed = completed + NEW.completed - OLD.completed,
                change_seq = change_seq + 1
            WHERE user_id = NEW.user_id;
        {_sqlite_feed_entry("NEW", _SQLITE_UPDATE_KIND, 0)}
    END
    """,
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS task_counts_insert",
    "DROP TRIGGER IF EXISTS task_counts_delete",
    "DROP TRIGGER IF EXISTS task_counts_complete",
    "DROP TRIGGER IF EXISTS task_counts_update",
]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.add_column("tasks", sa.Column("reminded_for", UTCDateTime(), nullable=True))
    op.create_index(
        "ix_tasks_reminder_pending",
        "tasks",
        ["remind_at"],
        postgresql_where=REMINDER_PENDING,
        sqlite_where=REMINDER_PENDING,
    )
    for name in ("change_seq", "pruned_seq"):
        op.add_column(
            "task_counts", sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
        )
    op.add_column("task_counts", sa.Column("feed_key", sa.String(64), nullable=True))
    op.create_table(
        "task_feed",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("task_id", TaskId, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("changed_at", UTCDateTime(), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("uq_task_feed_user_id_seq", "task_feed", ["user_id", "seq"], unique=True)
    op.create_index(
        "ix_task_feed_tombstones",
        "task_feed",
        ["changed_at"],
        postgresql_where=sa.text("deleted"),
        sqlite_where=sa.text("deleted = 1"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.LargeBinary(32), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("location", sa.String(1024), nullable=True),
        sa.Column("etag", sa.String(32), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])

    # Numbered under the migration's transaction, before the new triggers exist; on PostgreSQL
    # the table lock holds writes back until they do, so no change goes unnumbered.
    if postgres:
        op.execute("LOCK TABLE tasks IN SHARE MODE")
    op.execute(
        """
        INSERT INTO task_feed (user_id, task_id, kind, seq, deleted, changed_at)
        SELECT user_id, id, 'change', row_number() OVER (PARTITION BY user_id ORDER BY id),
               false, updated_at
        FROM tasks
        """
    )
    random_key = "gen_random_uuid()::text" if postgres else "lower(hex(randomblob(16)))"
    op.execute(
        f"""
        UPDATE task_counts
        SET change_seq = (SELECT count(*) FROM tasks WHERE tasks.user_id = task_counts.user_id),
            feed_key = {random_key}
        """
    )
    if postgres:
        op.execute(POSTGRES_FUNCTION)
        for statement in POSTGRES_TRIGGER:
            op.execute(statement)
    else:
        for statement in SQLITE_DROP:
            op.execute(statement)
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    counts_only = _revision_0002()
    if postgres:
        op.execute("DROP TRIGGER task_counts_follow ON tasks")
        op.execute("DROP FUNCTION task_counts_follow()")
        for statement in counts_only.POSTGRES_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_DROP:
            op.execute(statement)
        for statement in counts_only.SQLITE_TRIGGERS:
            op.execute(statement)
    op.drop_table("idempotency_keys")
    op.drop_table("task_feed")
    for name in ("feed_key", "pruned_seq", "change_seq"):
        op.drop_column("task_counts", name)
    op.drop_index("ix_tasks_reminder_pending", "tasks")
    op.drop_column("tasks", "reminded_for")


def _revision_0002() -> ModuleType:
    """Revision 0002, whose counts-only triggers a downgrade puts back."""
    path = Path(__file__).with_name("0002_task_counts.py")
    spec = importlib.util.spec_from_file_location("todo_api_revision_0002", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
