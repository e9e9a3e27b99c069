"""How a task is stored and shown: the columns a response carries, priorities as numbers."""

from __future__ import annotations

from typing import Any

from todo_api.database import Record
from todo_api.schema import tasks
from todo_api.tasks.schemas import Priority, TaskRead

Task = dict[str, Any]

# What a response shows of a task; the other columns serve queries and series.
PUBLIC_COLUMNS = tuple(tasks.c[name] for name in TaskRead.model_fields)
# Stored as 1-3, so that the column sorts low < medium < high.
PRIORITY_RANK = {Priority.LOW: 1, Priority.MEDIUM: 2, Priority.HIGH: 3}
_PRIORITY_NAME = {rank: priority.value for priority, rank in PRIORITY_RANK.items()}


# Plain strings: the column names are SQLAlchemy's str subclass, which pydantic-core's JSON
# writer cannot take as a dict key without inspecting it, a hundred times slower.
_PUBLIC_NAMES = tuple(TaskRead.model_fields)


def task_from_row(row: Record) -> Task:
    """A row as the API shows a task: priority by name, tags as a list, internals left out."""
    # Run for every task of every response: names looked up once, each value read once.
    task = {name: row[name] for name in _PUBLIC_NAMES}
    task["priority"] = _PRIORITY_NAME[task["priority"]]
    tags = task["tags"]
    task["tags"] = tags.split(",") if tags else []
    return task
