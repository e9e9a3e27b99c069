"""The statement behind a list of tasks: filters, search, order and page, from a TaskQuery.

One statement per shape of query (which filters, how many tags, words and priorities, which
order), built the first time that shape is asked for, with every value a bound parameter: the
database plans it once and the compiled statement is reused, whatever the values. The caller
hands in its ownership filters (tasks/repository.py), so that every list is built on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    UnaryExpression,
    and_,
    bindparam,
    false,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.sql.selectable import Subquery

from todo_api.schema import TAG_CARRIED_COLUMNS, task_counts, task_tags, tasks
from todo_api.tasks.rows import PRIORITY_RANK, PUBLIC_COLUMNS
from todo_api.tasks.schemas import TaskQuery, TaskStatus
from todo_api.tasks.text import search_words

STATUS_FILTERS: dict[TaskStatus, ColumnElement[bool]] = {
    TaskStatus.ALL: true(),
    TaskStatus.PENDING: tasks.c.completed == false(),
    TaskStatus.COMPLETED: tasks.c.completed == true(),
}
# How many of the caller's tasks match each status, read from the counts the database keeps
# (schema.task_counts): one row, whatever the number of tasks, where count(*) would read them all.
_KEPT_COUNTS: dict[TaskStatus, ColumnElement[int]] = {
    TaskStatus.ALL: task_counts.c.total,
    TaskStatus.PENDING: task_counts.c.total - task_counts.c.completed,
    TaskStatus.COMPLETED: task_counts.c.completed,
}


@dataclass(frozen=True, eq=False)  # compared and hashed as itself: a statement cache key
class Ownership:
    """The caller's ownership filter on each table a list reads (tasks/repository.py)."""

    tasks: ColumnElement[bool]
    tags: ColumnElement[bool]
    counts: ColumnElement[bool]


def kept_count(status: TaskStatus, owned: Ownership) -> Subquery:
    """One row, `total`: how many of the caller's tasks have this status."""
    count = select(_KEPT_COUNTS[status]).where(owned.counts)
    # A user who never had a task has no row of counts: zero.
    return select(func.coalesce(count.scalar_subquery(), 0).label("total")).subquery("counted")


# Each sort key's column; ties are broken by id, newest first, so that paging is stable.
# Priorities are stored 1-3 (low-high) and titles case-folded, so the plain column order is the
# contract's. Tasks without a due date come last in either direction.
_SORT_COLUMNS = {
    "created_at": tasks.c.created_at,
    "updated_at": tasks.c.updated_at,
    "due_at": tasks.c.due_at,
    "priority": tasks.c.priority,
    "title": tasks.c.title_key,
}


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a query's statement depends on; its values are parameters."""

    status: TaskStatus
    priorities: int
    tags: int
    words: int
    due_after: bool
    due_before: bool
    overdue: bool | None
    has_due: bool | None
    sort: str

    @property
    def by_tag_rows(self) -> bool:
        """Whether the tag rows alone tell the matches and their order: a tag filter, and no
        filter or sort on a column that they do not carry (schema.task_tags)."""
        on_tasks_only = self.words or self.status is not TaskStatus.ALL or self.overdue is not None
        carried_sort = self.sort.removeprefix("-") in TAG_CARRIED_COLUMNS
        return bool(self.tags) and carried_sort and not on_tasks_only


@dataclass(frozen=True, slots=True)
class ListStatements:
    """A list's statements. Each row of `page` is the total of matches and a task of the page.
    An empty page is one row with the total alone, unless there is a `count`: then it has no
    row, and past the end of the matches `count` (one row, `total`) tells the total."""

    page: Select[Any]
    count: Select[Any] | None = None


def list_statement(query: TaskQuery, owned: Ownership) -> tuple[ListStatements, dict[str, Any]]:
    """The statements for `query` and their parameters, but for the owner's."""
    words = search_words(query.q or "")
    shape = _Shape(
        status=query.status,
        priorities=len(query.priority),
        tags=len(query.tag),
        words=len(words),
        due_after=query.due_after is not None,
        due_before=query.due_before is not None,
        overdue=query.overdue,
        has_due=query.has_due,
        sort=query.sort,
    )
    params: dict[str, Any] = {
        "limit": query.limit,
        "offset": query.offset,
        "due_after": query.due_after,
        "due_before": query.due_before,
        "now": datetime.now(UTC),
    }
    ranks = [PRIORITY_RANK[priority] for priority in query.priority]
    params |= {f"priority_{n}": rank for n, rank in enumerate(ranks)}
    params |= {f"tag_{n}": tag for n, tag in enumerate(query.tag)}
    params |= {f"word_{n}": f"%{_escape_like(word)}%" for n, word in enumerate(words)}
    return _statements(shape, owned), params


_LIMIT = bindparam("limit", type_=tasks.c.id.type)
_OFFSET = bindparam("offset", type_=tasks.c.id.type)


@lru_cache(maxsize=256)
def _statements(shape: _Shape, owned: Ownership) -> ListStatements:
    if shape.by_tag_rows:
        return _from_tag_rows(shape, owned)
    filters = _task_filters(shape)
    if shape.tags:
        filters.append(tasks.c.id.in_(_tagged(shape, owned.tags)))
    matching = and_(owned.tasks, STATUS_FILTERS[shape.status], *filters)
    if shape.words or shape.tags:
        # The page reads every match anyway (a search; a lookup of each tagged task), so it
        # counts them on the way, instead of a second statement reading them all again.
        total = func.count().over().label("total")
        counting = select(total, *PUBLIC_COLUMNS).where(matching).order_by(*order_by(shape.sort))
        count = select(func.count().label("total")).where(matching)
        return ListStatements(counting.limit(_LIMIT).offset(_OFFSET), count)
    if filters:  # counted by indexes on their columns, the page read in order and cut short
        counted = select(func.count().label("total")).where(matching).subquery("counted")
    else:  # only the order differs from the plain list: the kept counts serve
        counted = kept_count(shape.status, owned)
    page = (
        # The folded title comes along for the outer query's order.
        select(*PUBLIC_COLUMNS, tasks.c.title_key)
        .where(matching)
        .order_by(*order_by(shape.sort))
        .limit(_LIMIT)
        .offset(_OFFSET)
        .subquery("page")
    )
    # Joined to the count, an empty page still yields one row that carries the total. The
    # outer query restates the order on the page's columns (a subquery's order is not kept).
    ordered = page.c[_SORT_COLUMNS[shape.sort.removeprefix("-")].name]
    return ListStatements(
        select(counted.c.total, *(column for column in page.c if column.name != "title_key"))
        .select_from(counted.outerjoin(page, true()))
        .order_by(*_order(ordered, shape.sort.startswith("-"), page.c.id))
    )


def _from_tag_rows(shape: _Shape, owned: Ownership) -> ListStatements:
    """The page's task ids, and the total, from the tag index alone; then only the page's tasks
    are read."""
    key, descending = shape.sort.removeprefix("-"), shape.sort.startswith("-")
    matched = (
        _tagged(shape, owned.tags, task_tags.c[key])
        .add_columns(func.count().over().label("total"))
        .order_by(*_order(task_tags.c[key], descending, task_tags.c.task_id))
        .limit(_LIMIT)
        .offset(_OFFSET)
        .subquery("matched")
    )
    page = (
        select(matched.c.total, *PUBLIC_COLUMNS)
        .select_from(matched.join(tasks, tasks.c.id == matched.c.task_id))
        .where(owned.tasks)
        .order_by(*_order(matched.c[key], descending, matched.c.task_id))
    )
    count = select(func.count().label("total")).select_from(
        _tagged(shape, owned.tags).subquery("matched")
    )
    return ListStatements(page, count)


def order_by(sort: str) -> list[UnaryExpression[Any]]:
    column = _SORT_COLUMNS[sort.removeprefix("-")]
    return _order(column, sort.startswith("-"), tasks.c.id)


def _order(column: Any, descending: bool, task_id: Any) -> list[UnaryExpression[Any]]:
    direction = column.desc() if descending else column.asc()
    if column.name == "due_at":
        direction = direction.nulls_last()
    return [direction, task_id.desc()]


def _tagged(shape: _Shape, owned_tags: ColumnElement[bool], *columns: Any) -> Select[Any]:
    """One row per task of the caller that carries every tag asked for and passes the filters on
    the columns tag rows carry: its id, and `columns` of its tag rows."""
    tags = [bindparam(f"tag_{n}", type_=task_tags.c.tag.type) for n in range(shape.tags)]
    rows = select(task_tags.c.task_id, *columns).where(
        owned_tags, task_tags.c.tag.in_(tags), *_carried_filters(task_tags, shape)
    )
    if shape.tags == 1:  # a task has each tag once
        return rows
    # The rows of one task carry the same values: grouped by them too, still one per task.
    return rows.group_by(task_tags.c.task_id, *columns).having(func.count() == shape.tags)


def _task_filters(shape: _Shape) -> list[ColumnElement[bool]]:
    """The filters on `tasks` beyond ownership, status and tags."""
    filters = _carried_filters(tasks, shape)
    for n in range(shape.words):
        word = bindparam(f"word_{n}", type_=tasks.c.search_text.type)
        filters.append(tasks.c.search_text.like(word, escape="\\"))
    if shape.overdue is not None:
        now = bindparam("now", type_=tasks.c.due_at.type)
        if shape.overdue:
            filters.append(and_(tasks.c.completed == false(), tasks.c.due_at < now))
        else:  # spelled out: NOT over a NULL due_at would drop the tasks without one
            filters.append(
                or_(tasks.c.completed == true(), tasks.c.due_at.is_(None), tasks.c.due_at >= now)
            )
    return filters


def _carried_filters(table: Table, shape: _Shape) -> list[ColumnElement[bool]]:
    """The filters on the columns that tag rows carry too, on `table`'s."""
    filters: list[ColumnElement[bool]] = []
    priority, due_at = table.c.priority, table.c.due_at
    if shape.priorities:
        ranks = [bindparam(f"priority_{n}", type_=priority.type) for n in range(shape.priorities)]
        filters.append(priority.in_(ranks))
    if shape.due_after:
        filters.append(due_at >= bindparam("due_after", type_=due_at.type))
    if shape.due_before:
        filters.append(due_at < bindparam("due_before", type_=due_at.type))
    if shape.has_due is not None:
        filters.append(due_at.is_not(None) if shape.has_due else due_at.is_(None))
    return filters


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
