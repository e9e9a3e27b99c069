"""Task queries. Every statement starts from the caller's ownership filter, written once here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    not_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Executable
from sqlalchemy.sql.dml import ReturningDelete, ReturningInsert, ReturningUpdate

from todo_api.database import StatementRunner, Transaction
from todo_api.schema import (
    PREVIOUS_ID_SET,
    TAG_CARRIED_COLUMNS,
    idempotency_keys,
    task_counts,
    task_feed,
    task_tags,
    tasks,
)
from todo_api.tasks.listing import (
    STATUS_FILTERS,
    ListStatements,
    Ownership,
    kept_count,
    list_statement,
)
from todo_api.tasks.recurrence import next_occurrence, parse_rule
from todo_api.tasks.rows import PRIORITY_RANK, PUBLIC_COLUMNS, Task, task_from_row
from todo_api.tasks.rules import check_schedule
from todo_api.tasks.schemas import TaskCreate, TaskQuery, TaskStatus
from todo_api.tasks.text import search_text, title_key

# The statements are built once, with the caller's id as a bound parameter. Building a statement
# and computing its cache key costs more than a round trip to the database; a prebuilt one is
# looked up in the compiled cache for free, and asyncpg reuses its prepared statement.
_USER: BindParameter[str] = bindparam("owner", type_=tasks.c.user_id.type)
_TASK_ID: BindParameter[int] = bindparam("task_id", type_=tasks.c.id.type)
_NOW: BindParameter[datetime] = bindparam("now", type_=tasks.c.updated_at.type)
OWNED: ColumnElement[bool] = tasks.c.user_id == _USER
OWNED_TAGS: ColumnElement[bool] = task_tags.c.user_id == _USER
_OWN_COUNTS: ColumnElement[bool] = task_counts.c.user_id == _USER
_THIS_TASK = (OWNED, tasks.c.id == _TASK_ID)
# The caller's change feed and row of counters (tasks.feed).
OWNED_FEED: ColumnElement[bool] = task_feed.c.user_id == _USER
OWNED_COUNTERS = _OWN_COUNTS
# The caller's idempotency keys (tasks.idempotency).
OWNED_KEYS: ColumnElement[bool] = idempotency_keys.c.user_id == _USER
_NEWEST_FIRST = (tasks.c.created_at.desc(), tasks.c.id.desc())

OWNERSHIP = Ownership(tasks=OWNED, tags=OWNED_TAGS, counts=_OWN_COUNTS)


def _list_statement(status: TaskStatus) -> Select[Any]:
    """A page of the caller's tasks, newest first, each row carrying the count of all matches."""
    counted = kept_count(status, OWNERSHIP)
    page = (
        select(*PUBLIC_COLUMNS)
        .where(OWNED, STATUS_FILTERS[status])
        .order_by(*_NEWEST_FIRST)
        .limit(bindparam("limit", type_=tasks.c.id.type))
        .offset(bindparam("offset", type_=tasks.c.id.type))
        .subquery("page")
    )
    # Joined to the count, an empty page still yields one row that carries the total.
    return (
        select(counted.c.total, *page.c)
        .select_from(counted.outerjoin(page, true()))
        .order_by(page.c.created_at.desc(), page.c.id.desc())
    )


_LIST = {status: ListStatements(_list_statement(status)) for status in TaskStatus}
_GET: Select[Any] = select(*PUBLIC_COLUMNS).where(*_THIS_TASK)
_GET_ALL_COLUMNS: Select[Any] = select(*tasks.c).where(*_THIS_TASK)

# The columns a client's values (and what follows from them) are written to.
_WRITABLE = (
    "title",
    "description",
    "priority",
    "tags",
    "due_at",
    "remind_at",
    "recurrence",
    "timezone",
    "title_key",
    "search_text",
)
_NEW_VALUES = {name: bindparam(f"new_{name}", type_=tasks.c[name].type) for name in _WRITABLE}
_NEW_TASK = {**_NEW_VALUES, "user_id": _USER, "completed": False, "created_at": _NOW}
_CREATE: ReturningInsert[Any] = (
    insert(tasks).values(**_NEW_TASK, updated_at=_NOW).returning(*PUBLIC_COLUMNS)
)


def create_where(condition: ColumnElement[bool]) -> ReturningInsert[Any]:
    """`_CREATE` (its parameters: `create_parameters`), inserting only when `condition` holds:
    a column of another part of the same statement (a common table expression), which the
    insert then reads before it writes."""
    values = {**_NEW_TASK, "updated_at": _NOW}
    selected = (
        value if isinstance(value, ColumnElement) else literal(value, type_=tasks.c[name].type)
        for name, value in values.items()
    )
    return (
        insert(tasks)
        .from_select(list(values), select(*selected).where(condition))
        .returning(*PUBLIC_COLUMNS)
    )


def create_parameters(data: TaskCreate, user_id: str, now: datetime) -> dict[str, Any]:
    """`_CREATE`'s parameters for a new task of `user_id`'s; raises InvalidTask if its
    schedule breaks a rule."""
    check_schedule(data.due_at, data.recurrence, data.timezone, blame="recurrence")
    values = {
        f"new_{name}": value
        for name, value in _column_values(data.model_dump(), description=None).items()
    }
    return {**values, "owner": user_id, "now": now}


def created_task(params: dict[str, Any], task_id: int) -> Task:
    """The task `_CREATE` writes with `params` (`create_parameters`, without tags), as a
    response shows it, with the id `task_id` in place of the one the database will give it."""
    row = {name.removeprefix("new_"): value for name, value in params.items()}
    row |= {
        "id": task_id,
        "user_id": params["owner"],
        "completed": False,
        "completed_at": None,
        "version": 1,  # the column's default
        "created_at": params["now"],
        "updated_at": params["now"],
    }
    return task_from_row(row)


# What a task's tag rows carry of it (schema.task_tags).
_CARRIED = tuple(tasks.c[name] for name in TAG_CARRIED_COLUMNS)


def _next_occurrence_insert(dialect: Any) -> ReturningInsert[Any]:
    """The next occurrence of a series, unless the task it follows already has one: the unique
    index on previous_id makes "at most one" hold however many completions race."""
    values = {
        **_NEW_TASK,
        "updated_at": _NOW,
        "occurrence": bindparam("new_occurrence", type_=tasks.c.occurrence.type),
        "previous_id": _TASK_ID,
    }
    statement = dialect.insert(tasks).values(**values)
    returning: ReturningInsert[Any] = statement.on_conflict_do_nothing(
        index_elements=[tasks.c.previous_id], index_where=PREVIOUS_ID_SET
    ).returning(tasks.c.id, *_CARRIED)
    return returning


_INSERT_NEXT = {
    "postgresql": _next_occurrence_insert(postgresql),
    "sqlite": _next_occurrence_insert(sqlite),
}

_CHANGE = {"version": tasks.c.version + 1, "updated_at": _NOW}
_COMPLETED_VALUE = bindparam("completed_value", type_=tasks.c.completed.type)
# Toggle, or set to a value; completed_at is the time completed last became true.
_COMPLETIONS = {
    "toggle": {
        "completed": not_(tasks.c.completed),
        "completed_at": case((tasks.c.completed, None), else_=_NOW),
    },
    "set": {
        "completed": _COMPLETED_VALUE,
        "completed_at": case((_COMPLETED_VALUE, func.coalesce(tasks.c.completed_at, _NOW))),
    },
}
# A task without recurrence completes in one statement; a recurring one may need a second, the
# next occurrence's insert, in the same transaction, so it is written with all columns back.
COMPLETE_PLAIN: dict[str, ReturningUpdate[Any]] = {
    kind: update(tasks)
    .where(*_THIS_TASK, tasks.c.recurrence.is_(None))
    .values(**values, **_CHANGE)
    .returning(*PUBLIC_COLUMNS)
    for kind, values in _COMPLETIONS.items()
}
# A write of a task worked out from the task as read, applied only if it is still at the
# version read (`_update_statement`; COMPLETE_PLAIN with `completion`'s answer stored).
READ_VERSION: ColumnElement[bool] = tasks.c.version == bindparam(
    "read_version", type_=tasks.c.version.type
)
_COMPLETE_ANY: dict[str, ReturningUpdate[Any]] = {
    kind: update(tasks).where(*_THIS_TASK).values(**values, **_CHANGE).returning(*tasks.c)
    for kind, values in _COMPLETIONS.items()
}
# With If-Match: the same writes, applied only to the version the client names.
_AT_VERSION = tasks.c.version == bindparam("if_version", type_=tasks.c.version.type)
_COMPLETE_PLAIN_AT = {kind: s.where(_AT_VERSION) for kind, s in COMPLETE_PLAIN.items()}
_COMPLETE_ANY_AT = {kind: s.where(_AT_VERSION) for kind, s in _COMPLETE_ANY.items()}


def completion_kind(completed: bool | None) -> str:
    """Which of `_COMPLETIONS` sets `completed` (None: flips it)."""
    return "toggle" if completed is None else "set"


def completion_parameters(
    user_id: str, task_id: int, completed: bool | None, now: datetime
) -> dict[str, Any]:
    """The parameters of `COMPLETE_PLAIN[completion_kind(completed)]`."""
    return {"owner": user_id, "task_id": task_id, "now": now, "completed_value": completed}


def completion(current: Task, completed: bool | None, now: datetime) -> Task:
    """The task `_COMPLETIONS` makes of the row `current` (all columns) at `now`, worked out
    the way its statement does, as a response shows it."""
    was_completed = current["completed"]
    if completed is None:
        completed_at = None if was_completed else now
        completed = not was_completed
    else:
        completed_at = (current["completed_at"] or now) if completed else None
    changed = {"completed": completed, "completed_at": completed_at}
    return task_from_row(current | changed | {"version": current["version"] + 1, "updated_at": now})


@lru_cache(maxsize=256)
def _update_statement(columns: frozenset[str]) -> ReturningUpdate[Any]:
    """Sets `columns` from the parameters named new_<column>, if the task is still at the
    version the new values were worked out from."""
    values = {name: bindparam(f"new_{name}", type_=tasks.c[name].type) for name in columns}
    return (
        update(tasks)
        .where(*_THIS_TASK, READ_VERSION)
        .values(**values, **_CHANGE)
        .returning(*tasks.c)
    )


@cache
def _insert_tags(count: int) -> ReturningInsert[Any]:
    carried = {
        column.name: bindparam(f"carried_{column.name}", type_=column.type) for column in _CARRIED
    }
    rows = [
        {"task_id": _TASK_ID, "user_id": _USER, "tag": bindparam(f"tag_{n}"), **carried}
        for n in range(count)
    ]
    return insert(task_tags).values(rows).returning(task_tags.c.task_id)


_DELETE_TAGS: ReturningDelete[Any] = (
    delete(task_tags)
    .where(OWNED_TAGS, task_tags.c.task_id == _TASK_ID)
    .returning(task_tags.c.task_id)
)
_TAGS: Select[Any] = (
    select(task_tags.c.tag.label("name"), func.count().label("count"))
    .where(OWNED_TAGS)
    .group_by(task_tags.c.tag)
    .order_by(task_tags.c.tag)
)
_DELETE: ReturningDelete[Any] = delete(tasks).where(*_THIS_TASK).returning(*PUBLIC_COLUMNS)
_DELETE_AT: ReturningDelete[Any] = _DELETE.where(_AT_VERSION)
TagCounts = list[dict[str, Any]]  # [{"name": ..., "count": ...}]
# Writes of one task that lost a race to another write are worked out again this many times.
_WRITE_ATTEMPTS = 20


class PreconditionFailed(Exception):
    """The task is not at the version the client's If-Match names: nothing was written."""


@dataclass(frozen=True, slots=True)
class Written:
    """A task as a write left it, and the next occurrence that write created, if any."""

    task: Task
    next_occurrence_id: int | None = None


class TaskRepository:
    """One user's tasks. Another user's task is, to every method here, a task that does not exist.

    Each method is committed before it returns (one statement, or one transaction), so a caller
    that answers after it has returned never reports a write that is not stored.
    """

    def __init__(self, runner: StatementRunner, user_id: str) -> None:
        self._runner = runner
        self._user_id = user_id

    @property
    def user_id(self) -> str:
        """Whose tasks these are: the verified token's subject."""
        return self._user_id

    async def list(self, query: TaskQuery) -> tuple[list[Task], int]:
        """A page of the tasks `query` asks for, and how many match in all (one round trip)."""
        if query.only_status():
            # The most common list, on its prebuilt statement and the kept counts.
            statements = _LIST[query.status]
            params: dict[str, Any] = {"limit": query.limit, "offset": query.offset}
        else:
            statements, params = list_statement(query, OWNERSHIP)
        params["owner"] = self._user_id
        rows = await self._runner.fetch_all(statements.page, params)
        if not rows and statements.count is not None:
            # No match at all, or a page past the end of the matches: only that one is counted
            # on its own.
            if not query.offset:
                return [], 0
            counted = await self._runner.fetch_one(statements.count, params, write=False)
            assert counted is not None  # count(*) always yields a row
            return [], counted["total"]
        total = rows[0]["total"] if rows else 0
        # Each row is a task plus the total; an empty page may be one row with the total alone.
        return [task_from_row(row) for row in rows if row["id"] is not None], total

    async def get(self, task_id: int) -> Task | None:
        task = await self._one(_GET, task_id=task_id, write=False)
        return None if task is None else task_from_row(task)

    async def stored_row(self, task_id: int) -> Task | None:
        """The task as stored, every column (not a response's shape), or None."""
        return await self._one(_GET_ALL_COLUMNS, task_id=task_id, write=False)

    async def create(self, data: TaskCreate) -> Task:
        params = create_parameters(data, self._user_id, _now())
        if not data.tags:
            task = await self._runner.fetch_one(_CREATE, params, write=True)
        else:
            async with self._runner.transaction() as transaction:
                task = await transaction.fetch_one(_CREATE, params)
                assert task is not None
                await self._insert_tags(transaction, task, data.tags)
        assert task is not None
        return task_from_row(task)

    async def update(
        self, task_id: int, changes: dict[str, Any], *, if_version: int | None = None
    ) -> Written | None:
        """Apply `changes` (field -> new value). Worked out from the task as stored and written
        only if it has not changed meanwhile (its version), else worked out again; with
        `if_version`, only to that version (else PreconditionFailed)."""
        if not changes:
            task = await self.get(task_id)
            _check_version(task, if_version)
            return None if task is None else Written(task)
        for _ in range(_WRITE_ATTEMPTS):
            current = await self._one(_GET_ALL_COLUMNS, task_id=task_id, write=False)
            _check_version(current, if_version)
            if current is None:
                return None
            values = _changed_columns(current, changes)
            statement = _update_statement(frozenset(values))
            params = {f"new_{name}": value for name, value in values.items()}
            params |= {"read_version": current["version"], "now": _now()}
            if "tags" not in changes and not _completes_series(current | changes):
                # One statement, atomic on its own: no transaction's two extra round trips.
                task = await self._one(statement, task_id=task_id, **params)
                if task is None:
                    continue
                return Written(task_from_row(task))
            async with self._runner.transaction() as transaction:
                task = await self._in(transaction, statement, task_id, params)
                if task is None:
                    continue
                if "tags" in changes:
                    await self._in(transaction, _DELETE_TAGS, task_id, {})
                    await self._insert_tags(transaction, task, changes["tags"])
                next_id = await self._follow_completion(transaction, task)
            return Written(task_from_row(task), next_id)
        raise RuntimeError(f"task {task_id} kept changing during {_WRITE_ATTEMPTS} attempts")

    async def set_completed(
        self, task_id: int, completed: bool | None, *, if_version: int | None = None
    ) -> Written | None:
        """Set `completed`, or flip it when `completed` is None, atomically. Completing a
        recurring task creates its next occurrence in the same transaction. With
        `if_version`, only a task at that version is written (else PreconditionFailed)."""
        kind = completion_kind(completed)
        plain, any_ = (
            (COMPLETE_PLAIN, _COMPLETE_ANY)
            if if_version is None
            else (_COMPLETE_PLAIN_AT, _COMPLETE_ANY_AT)
        )
        params = {"now": _now(), "completed_value": completed, "if_version": if_version}
        task = await self._runner.fetch_one(
            plain[kind],
            {**params, "owner": self._user_id, "task_id": task_id},
            write=True,
        )
        if task is not None:
            return Written(task_from_row(task))
        # Missing, recurring, or not at that version: the second needs the transaction.
        async with self._runner.transaction() as transaction:
            task = await self._in(transaction, any_[kind], task_id, params)
            next_id = None if task is None else await self._follow_completion(transaction, task)
        if task is None:
            await self._missing_or_stale(task_id, if_version)
            return None
        return Written(task_from_row(task), next_id)

    async def tags(self) -> TagCounts:
        """The caller's tags by name, each with how many of the caller's tasks carry it."""
        rows = await self._runner.fetch_all(_TAGS, {"owner": self._user_id})
        return [{"name": row["name"], "count": row["count"]} for row in rows]

    async def delete(self, task_id: int, *, if_version: int | None = None) -> Task | None:
        """The task as it was before it was deleted, or None if there was no such task; with
        `if_version`, it is deleted only at that version (else PreconditionFailed)."""
        if if_version is None:
            row = await self._one(_DELETE, task_id=task_id)
        else:
            row = await self._one(_DELETE_AT, task_id=task_id, if_version=if_version)
            if row is None:
                await self._missing_or_stale(task_id, if_version)
        return None if row is None else task_from_row(row)

    async def _missing_or_stale(self, task_id: int, if_version: int | None) -> None:
        """After a conditional write that found nothing: None if the task does not exist;
        PreconditionFailed if it does (at another version)."""
        if if_version is not None and await self.get(task_id) is not None:
            raise PreconditionFailed

    async def _follow_completion(self, transaction: Transaction, task: Task) -> int | None:
        """The id of the next occurrence this completion created: None for a task that is not
        completed, not recurring, at the end of its series, or that already has its next."""
        if not _completes_series(task):
            return None
        due_at: datetime = task["due_at"]
        rule = parse_rule(task["recurrence"])
        next_due = next_occurrence(rule, due_at, ZoneInfo(task["timezone"]), task["occurrence"])
        if next_due is None:
            return None
        remind_at = task["remind_at"]
        params = {f"new_{name}": task[name] for name in _WRITABLE}
        params |= {
            "new_due_at": next_due,
            "new_remind_at": None if remind_at is None else next_due - (due_at - remind_at),
            "new_occurrence": task["occurrence"] + 1,
            "now": _now(),
        }
        statement = _INSERT_NEXT[self._runner.dialect_name]
        created = await self._in(transaction, statement, task["id"], params)
        if created is None:
            return None
        if task["tags"]:
            await self._insert_tags(transaction, created, task["tags"].split(","))
        next_id: int = created["id"]
        return next_id

    async def _insert_tags(self, transaction: Transaction, task: Task, tags: Sequence[str]) -> None:
        """Tag rows for `task` (a row of it with its id and the columns tag rows carry)."""
        if tags:
            params = {f"tag_{n}": tag for n, tag in enumerate(tags)}
            params |= {f"carried_{column.name}": task[column.name] for column in _CARRIED}
            await self._in(transaction, _insert_tags(len(tags)), task["id"], params)

    async def _in(
        self, transaction: Transaction, statement: Executable, task_id: int, params: dict[str, Any]
    ) -> Task | None:
        return await transaction.fetch_one(
            statement, {**params, "owner": self._user_id, "task_id": task_id}
        )

    async def _one(
        self, statement: Executable, *, write: bool = True, **params: Any
    ) -> Task | None:
        params["owner"] = self._user_id
        return await self._runner.fetch_one(statement, params, write=write)


def _column_values(fields: dict[str, Any], *, description: str | None) -> dict[str, Any]:
    """The columns that store these client fields, derived columns included."""
    values: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "priority":
            values[name] = PRIORITY_RANK[value]
        elif name == "tags":
            values[name] = ",".join(value)
        elif name in _WRITABLE or name == "completed":
            values[name] = value
    if "title" in fields:
        values["title_key"] = title_key(fields["title"])
    if "title" in fields or "description" in fields:
        values["search_text"] = search_text(fields["title"], fields.get("description", description))
    return values


def _changed_columns(current: Task, changes: dict[str, Any]) -> dict[str, Any]:
    """The columns to write for `changes` to the task `current`; raises InvalidTask if the
    result breaks a rule that spans fields."""
    merged = current | changes
    recurrence_changed = "recurrence" in changes and changes["recurrence"] != current["recurrence"]
    if recurrence_changed or {"due_at", "timezone"} & changes.keys():
        blame = "due_at" if "due_at" in changes else "recurrence"
        check_schedule(merged["due_at"], merged["recurrence"], merged["timezone"], blame=blame)
    fields = dict(changes)
    if {"title", "description"} & changes.keys():
        fields |= {"title": merged["title"], "description": merged["description"]}
    values = _column_values(fields, description=merged["description"])
    if "completed" in changes and changes["completed"] != current["completed"]:
        values["completed_at"] = _now() if changes["completed"] else None
    if recurrence_changed:
        values["occurrence"] = 1  # a new rule starts a new series at this task
    return values


def _completes_series(task: Task) -> bool:
    """Whether a task written with these values may need its next occurrence created."""
    return bool(task["completed"] and task["recurrence"] is not None and task["due_at"] is not None)


def _check_version(task: Task | None, if_version: int | None) -> None:
    if task is not None and if_version is not None and task["version"] != if_version:
        raise PreconditionFailed


def _now() -> datetime:
    return datetime.now(UTC)
