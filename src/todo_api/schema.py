"""The database schema as SQLAlchemy Core tables, shared by migrations and queries."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    and_,
    false,
    func,
    text,
)
from sqlalchemy.types import TypeDecorator

TITLE_MAX = 200
DESCRIPTION_MAX = 2000
USER_ID_MAX = 255
TAG_MAX = 50
TAGS_PER_TASK = 20
RECURRENCE_MAX = 500
TIMEZONE_MAX = 64
# The tags of a task, comma-joined (a tag holds no comma): at most 20 of 50 characters.
TAG_LIST_MAX = TAGS_PER_TASK * (TAG_MAX + 1)

# PostgreSQL's text types cannot hold U+0000, and no database here can store an unpaired UTF-16
# surrogate (U+D800 to U+DFFF): UTF-8 cannot encode one, yet JSON's \uXXXX escapes carry it.
_UNSTORABLE_CHARACTER = re.compile("[\x00\ud800-\udfff]")


def unstorable_character(text: str) -> str | None:
    """The first character of `text` that a text column cannot hold, or None if it has none."""
    found = _UNSTORABLE_CHARACTER.search(text)
    return found.group() if found else None


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC timestamp on every database.

    PostgreSQL keeps the offset (`timestamptz`); SQLite drops it, so values are stored there as
    naive UTC and given their offset back when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData()

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
TaskId = BigInteger().with_variant(Integer(), "sqlite")

# Text that sorts by code point on every database: SQLite compares bytes (UTF-8 keeps code point
# order); PostgreSQL would otherwise sort by the database's locale.
CodePointText = Text().with_variant(Text(collation="C"), "postgresql")

tasks = Table(
    "tasks",
    metadata,
    Column("id", TaskId, primary_key=True, autoincrement=True),
    Column("user_id", String(USER_ID_MAX), nullable=False),
    Column("title", String(TITLE_MAX), nullable=False),
    Column("description", String(DESCRIPTION_MAX), nullable=True),
    Column("completed", Boolean, nullable=False, server_default=false()),
    Column("created_at", UTCDateTime, nullable=False, server_default=func.now()),
    Column("updated_at", UTCDateTime, nullable=False, server_default=func.now()),
    # 1 low, 2 medium, 3 high: sorts as the contract orders priorities.
    Column("priority", SmallInteger, nullable=False, server_default="2"),
    # The task's tags, sorted and comma-joined, as responses show them; task_tags below is
    # what filters and counts them.
    Column("tags", String(TAG_LIST_MAX), nullable=False, server_default=""),
    Column("due_at", UTCDateTime, nullable=True),
    Column("remind_at", UTCDateTime, nullable=True),
    Column("recurrence", String(RECURRENCE_MAX), nullable=True),
    Column("timezone", String(TIMEZONE_MAX), nullable=False, server_default="UTC"),
    Column("completed_at", UTCDateTime, nullable=True),
    Column("version", Integer, nullable=False, server_default="1"),
    # The task's place in its recurring series (1 for the first), which COUNT limits.
    Column("occurrence", Integer, nullable=False, server_default="1"),
    # On a next occurrence: the task whose completion created it. Unique, so a task gets at most
    # one next occurrence, however many completions race to create it.
    Column("previous_id", TaskId, nullable=True),
    # str.casefold of the title (the title sort), and of title and description (search): the
    # service folds, so every database compares the same text, whatever its idea of case.
    Column("title_key", CodePointText, nullable=False, server_default=""),
    Column("search_text", Text, nullable=False, server_default=""),
    # The remind_at value whose reminder has been delivered (sync.reminders); the reminder is
    # due again whenever remind_at moves away from it.
    Column("reminded_for", UTCDateTime, nullable=True),
    # Each index is one more entry to write for every insert and every update of an indexed
    # column (a completion changes `completed` and `updated_at`): the status filter has none of
    # its own, it reads the order's index (migration 0006).
    #
    # The narrowest on the user: a search combines it with the trigram index.
    Index("ix_tasks_user_id", "user_id"),
    # Serves the default list order: a user's tasks newest first.
    Index("ix_tasks_user_id_created_at_id", "user_id", "created_at", "id"),
    # One per sort order the list offers; each also serves its column's filters.
    Index("ix_tasks_user_id_updated_at_id", "user_id", "updated_at", "id"),
    Index("ix_tasks_user_id_due_at_id", "user_id", "due_at", "id"),
    Index("ix_tasks_user_id_priority_id", "user_id", "priority", "id"),
    Index("ix_tasks_user_id_title_key_id", "user_id", "title_key", "id"),
)

# Only next occurrences have a previous_id: the index holds no entry for any other task.
PREVIOUS_ID_SET = tasks.c.previous_id.is_not(None)
Index(
    "uq_tasks_previous_id",
    tasks.c.previous_id,
    unique=True,
    postgresql_where=PREVIOUS_ID_SET,
    sqlite_where=PREVIOUS_ID_SET,
)

# Open tasks whose reminder is due once remind_at passes: it has not been delivered for the
# current remind_at value (sync: tasks.reminders). The index keeps the delivery's scan to them.
REMINDER_PENDING = and_(
    tasks.c.remind_at.is_not(None),
    tasks.c.completed == false(),
    tasks.c.reminded_for.is_distinct_from(tasks.c.remind_at),
)
Index(
    "ix_tasks_reminder_pending",
    tasks.c.remind_at,
    postgresql_where=REMINDER_PENDING,
    sqlite_where=REMINDER_PENDING,
)

# One row per tag of a task: "carries all of these tags" and the tag counts read the
# (user_id, tag) index instead of every task of the user.
#
# Each row also carries its task's priority, due date and creation time, copied when the row is
# written and kept in step by a trigger on `tasks` (migration 0005): a tag filter combined with
# filters and sorts on those columns is counted and ordered from this table's index alone, and
# only the page's tasks are read, where reading `tasks` would cost a lookup per tagged task.
task_tags = Table(
    "task_tags",
    metadata,
    Column("task_id", TaskId, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(TAG_MAX), primary_key=True),
    Column("user_id", String(USER_ID_MAX), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("due_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    # Covering: the carried columns are in the key so that SQLite can read them from it too.
    Index(
        "ix_task_tags_user_id_tag_task_id_carried",
        "user_id",
        "tag",
        "task_id",
        "priority",
        "due_at",
        "created_at",
    ),
)
# The columns of `tasks` that task_tags carries.
TAG_CARRIED_COLUMNS = ("priority", "due_at", "created_at")

SEARCH_INDEX = "ix_tasks_search_text_trgm"
"""PostgreSQL only, and only where the pg_trgm extension could be created (migration 0003):
not declared above, so schema comparisons leave it out (`is_declared`)."""


def is_declared(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic's include_object hook: every object but the optional search index."""
    return not (type_ == "index" and name == SEARCH_INDEX)


# One row per user, kept by triggers on `tasks` (migrations 0002 and 0004) in the transaction of
# every write; the service only reads it. How many tasks the user has and how many of them are
# completed; and the user's change feed: `change_seq` numbers each change (the row's lock,
# held until commit, makes the numbers follow the commit order: docs/sync.md), `pruned_seq` is
# the newest change forgotten by pruning, `feed_key` signs the user's feed cursors.
task_counts = Table(
    "task_counts",
    metadata,
    Column("user_id", String(USER_ID_MAX), primary_key=True),
    Column("total", BigInteger, nullable=False, server_default="0"),
    Column("completed", BigInteger, nullable=False, server_default="0"),
    Column("change_seq", BigInteger, nullable=False, server_default="0"),
    Column("pruned_seq", BigInteger, nullable=False, server_default="0"),
    Column("feed_key", String(64), nullable=True),
)

FEED_CHANGE = "change"
FEED_REMINDER = "reminder"

# The change feed: one row per task and kind (a change, a reminder), moved to the user's next
# `change_seq` by every write of the task (so several changes merge into one), kept as a
# tombstone (`deleted`) when the task is deleted, until pruning. Written by the triggers only.
task_feed = Table(
    "task_feed",
    metadata,
    Column("user_id", String(USER_ID_MAX), primary_key=True),
    Column("task_id", TaskId, primary_key=True, autoincrement=False),
    Column("kind", String(8), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, server_default=false()),
    Column("changed_at", UTCDateTime, nullable=False, server_default=func.now()),
    # The feed read: a user's entries after a cursor, in order.
    Index("uq_task_feed_user_id_seq", "user_id", "seq", unique=True),
    # Pruning: old tombstones only.
    Index(
        "ix_task_feed_tombstones",
        "changed_at",
        postgresql_where=text("deleted"),
        sqlite_where=text("deleted = 1"),
    ),
)

IDEMPOTENCY_KEY_MAX = 255

# Responses to requests sent with an Idempotency-Key, stored in the transaction of the write
# they answer, so that a retry gets the same answer and writes nothing (sync.idempotency).
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("user_id", String(USER_ID_MAX), primary_key=True),
    Column("key", String(IDEMPOTENCY_KEY_MAX), primary_key=True),
    Column("fingerprint", LargeBinary(32), nullable=False),
    Column("status", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("location", String(1024), nullable=True),
    Column("etag", String(32), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_idempotency_keys_created_at", "created_at"),
)
