"""Task queries. Every statement starts from the caller's ownership filter, written once here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    delete,
    false,
    func,
    insert,
    not_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from todo_api.schema import tasks
from todo_api.tasks.schemas import TaskCreate, TaskStatus

Task = dict[str, Any]

_NEWEST_FIRST = (tasks.c.created_at.desc(), tasks.c.id.desc())


class TaskRepository:
    """One user's tasks. Another user's task is, to every method here, a task that does not exist.

    Each method is one transaction, committed before it returns, so a caller that answers
    after it has returned never reports a write that is not stored.
    """

    def __init__(self, engine: AsyncEngine, user_id: str) -> None:
        self._engine = engine
        self._user_id = user_id
        self._owned: ColumnElement[bool] = tasks.c.user_id == user_id

    def _readable(self) -> Select[Any]:
        return select(*tasks.c).where(self._owned)

    async def list(self, status: TaskStatus, *, limit: int, offset: int) -> tuple[list[Task], int]:
        """A page of tasks, newest first, and how many match in all (one round trip)."""
        matching = self._readable().where(_status_filter(status))
        counted = matching.with_only_columns(func.count().label("total")).subquery("counted")
        page = matching.order_by(*_NEWEST_FIRST).limit(limit).offset(offset).subquery("page")
        # Joined to the count, an empty page still yields one row that carries the total.
        statement = (
            select(counted.c.total, *page.c)
            .select_from(counted.outerjoin(page, true()))
            .order_by(page.c.created_at.desc(), page.c.id.desc())
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).mappings().all()
        total = rows[0]["total"] if rows else 0
        items = [_task(row) for row in rows if row["id"] is not None]
        return items, total

    async def get(self, task_id: int) -> Task | None:
        async with self._engine.connect() as connection:
            row = (await connection.execute(self._readable().where(tasks.c.id == task_id))).first()
        return None if row is None else dict(row._mapping)

    async def create(self, data: TaskCreate) -> Task:
        now = _now()
        statement = (
            insert(tasks)
            .values(
                user_id=self._user_id,
                title=data.title,
                description=data.description,
                completed=False,
                created_at=now,
                updated_at=now,
            )
            .returning(*tasks.c)
        )
        task = await self._write(statement)
        assert task is not None
        return task

    async def update(self, task_id: int, changes: dict[str, Any]) -> Task | None:
        if not changes:
            return await self.get(task_id)
        return await self._change(task_id, **changes)

    async def set_completed(self, task_id: int, completed: bool | None) -> Task | None:
        """Set `completed`, or flip it when `completed` is None, in one atomic statement."""
        value = not_(tasks.c.completed) if completed is None else completed
        return await self._change(task_id, completed=value)

    async def delete(self, task_id: int) -> bool:
        statement = delete(tasks).where(self._owned, tasks.c.id == task_id).returning(tasks.c.id)
        return await self._write(statement) is not None

    async def _change(self, task_id: int, **values: Any) -> Task | None:
        statement = (
            update(tasks)
            .where(self._owned, tasks.c.id == task_id)
            .values(**values, updated_at=_now())
            .returning(*tasks.c)
        )
        return await self._write(statement)

    async def _write(self, statement: Any) -> Task | None:
        async with self._engine.begin() as connection:
            row = (await connection.execute(statement)).first()
        return None if row is None else dict(row._mapping)


def _status_filter(status: TaskStatus) -> ColumnElement[bool]:
    if status is TaskStatus.PENDING:
        return tasks.c.completed == false()
    if status is TaskStatus.COMPLETED:
        return tasks.c.completed == true()
    return true()


def _task(row: Any) -> Task:
    return {column.name: row[column.name] for column in tasks.c}


def _now() -> datetime:
    return datetime.now(UTC)
