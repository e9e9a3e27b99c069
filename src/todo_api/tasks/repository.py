"""Task queries. Every statement starts from the caller's ownership filter, written once here."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    bindparam,
    delete,
    false,
    func,
    insert,
    not_,
    select,
    true,
    update,
)
from sqlalchemy.sql import Executable
from sqlalchemy.sql.dml import ReturningDelete, ReturningInsert, ReturningUpdate

from todo_api.database import StatementRunner
from todo_api.schema import task_counts, tasks
from todo_api.tasks.schemas import TaskCreate, TaskStatus

Task = dict[str, Any]

# The statements are built once, with the caller's id as a bound parameter. Building a statement
# and computing its cache key costs more than a round trip to the database; a prebuilt one is
# looked up in the compiled cache for free, and asyncpg reuses its prepared statement.
_USER: BindParameter[str] = bindparam("owner", type_=tasks.c.user_id.type)
_TASK_ID: BindParameter[int] = bindparam("task_id", type_=tasks.c.id.type)
_NOW: BindParameter[datetime] = bindparam("now", type_=tasks.c.updated_at.type)
_OWNED: ColumnElement[bool] = tasks.c.user_id == _USER
_OWN_COUNTS: ColumnElement[bool] = task_counts.c.user_id == _USER
_THIS_TASK = (_OWNED, tasks.c.id == _TASK_ID)
_NEWEST_FIRST = (tasks.c.created_at.desc(), tasks.c.id.desc())

_STATUS_FILTERS: dict[TaskStatus, ColumnElement[bool]] = {
    TaskStatus.ALL: true(),
    TaskStatus.PENDING: tasks.c.completed == false(),
    TaskStatus.COMPLETED: tasks.c.completed == true(),
}
# How many of the caller's tasks match each filter, read from the counts the database keeps
# (schema.task_counts): one row, whatever the number of tasks, where count(*) would read them all.
_MATCHING_COUNTS: dict[TaskStatus, ColumnElement[int]] = {
    TaskStatus.ALL: task_counts.c.total,
    TaskStatus.PENDING: task_counts.c.total - task_counts.c.completed,
    TaskStatus.COMPLETED: task_counts.c.completed,
}


def _list_statement(status: TaskStatus) -> Select[Any]:
    """A page of the caller's tasks, newest first, each row carrying the count of all matches."""
    count = select(_MATCHING_COUNTS[status]).where(_OWN_COUNTS)
    # A user who never had a task has no row of counts: zero.
    counted = select(func.coalesce(count.scalar_subquery(), 0).label("total")).subquery("counted")
    page = (
        select(*tasks.c)
        .where(_OWNED, _STATUS_FILTERS[status])
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


_LIST = {status: _list_statement(status) for status in TaskStatus}
_GET: Select[Any] = select(*tasks.c).where(*_THIS_TASK)
_CREATE: ReturningInsert[Any] = (
    insert(tasks)
    .values(
        user_id=_USER,
        title=bindparam("new_title", type_=tasks.c.title.type),
        description=bindparam("new_description", type_=tasks.c.description.type),
        completed=False,
        created_at=_NOW,
        updated_at=_NOW,
    )
    .returning(*tasks.c)
)
_TOGGLE: ReturningUpdate[Any] = (
    update(tasks)
    .where(*_THIS_TASK)
    .values(completed=not_(tasks.c.completed), updated_at=_NOW)
    .returning(*tasks.c)
)


@cache
def _update_statement(columns: frozenset[str]) -> ReturningUpdate[Any]:
    """Sets `columns` from the parameters named new_<column>; one statement per set of columns
    (at most seven), built the first time that set is asked for."""
    values = {name: bindparam(f"new_{name}", type_=tasks.c[name].type) for name in columns}
    return update(tasks).where(*_THIS_TASK).values(**values, updated_at=_NOW).returning(*tasks.c)


_DELETE: ReturningDelete[Any] = delete(tasks).where(*_THIS_TASK).returning(tasks.c.id)


class TaskRepository:
    """One user's tasks. Another user's task is, to every method here, a task that does not exist.

    Each method is one statement, committed before it returns, so a caller that answers after
    it has returned never reports a write that is not stored.
    """

    def __init__(self, runner: StatementRunner, user_id: str) -> None:
        self._runner = runner
        self._user_id = user_id

    @property
    def user_id(self) -> str:
        """Whose tasks these are: the verified token's subject."""
        return self._user_id

    async def list(self, status: TaskStatus, *, limit: int, offset: int) -> tuple[list[Task], int]:
        """A page of tasks, newest first, and how many match in all (one round trip)."""
        params = {"owner": self._user_id, "limit": limit, "offset": offset}
        rows = await self._runner.fetch_all(_LIST[status], params)
        total = rows[0]["total"] if rows else 0
        # Each row is a task plus the total; on an empty page, one row with the total alone.
        for row in rows:
            del row["total"]
        return [row for row in rows if row["id"] is not None], total

    async def get(self, task_id: int) -> Task | None:
        return await self._one(_GET, task_id=task_id, write=False)

    async def create(self, data: TaskCreate) -> Task:
        task = await self._one(
            _CREATE, new_title=data.title, new_description=data.description, now=_now()
        )
        assert task is not None
        return task

    async def update(self, task_id: int, changes: dict[str, Any]) -> Task | None:
        if not changes:
            return await self.get(task_id)
        statement = _update_statement(frozenset(changes))
        new_values = {f"new_{name}": value for name, value in changes.items()}
        return await self._one(statement, task_id=task_id, now=_now(), **new_values)

    async def set_completed(self, task_id: int, completed: bool | None) -> Task | None:
        """Set `completed`, or flip it when `completed` is None, in one atomic statement."""
        if completed is None:
            return await self._one(_TOGGLE, task_id=task_id, now=_now())
        return await self.update(task_id, {"completed": completed})

    async def delete(self, task_id: int) -> bool:
        return await self._one(_DELETE, task_id=task_id) is not None

    async def _one(
        self, statement: Executable, *, write: bool = True, **params: Any
    ) -> Task | None:
        params["owner"] = self._user_id
        return await self._runner.fetch_one(statement, params, write=write)


def _now() -> datetime:
    return datetime.now(UTC)
