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
    Index,
    Integer,
    MetaData,
    String,
    Table,
    false,
    func,
)
from sqlalchemy.types import TypeDecorator

TITLE_MAX = 200
DESCRIPTION_MAX = 2000
USER_ID_MAX = 255

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
    Index("ix_tasks_user_id", "user_id"),
    Index("ix_tasks_user_id_completed", "user_id", "completed"),
    # Serves the default list order: a user's tasks newest first.
    Index("ix_tasks_user_id_created_at_id", "user_id", "created_at", "id"),
)

# How many tasks each user has, and how many of them are completed. Kept exact by triggers on
# `tasks` (migration 0002), in the transaction of every write; the service only reads it.
task_counts = Table(
    "task_counts",
    metadata,
    Column("user_id", String(USER_ID_MAX), primary_key=True),
    Column("total", BigInteger, nullable=False, server_default="0"),
    Column("completed", BigInteger, nullable=False, server_default="0"),
)
