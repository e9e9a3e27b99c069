"""The task tools: what each takes and returns, told for a model, and the domain call it makes.

A tool's arguments are validated by the domain's own input models (TaskCreate, TaskUpdate, ...),
exactly as the REST API validates a body, and its input schema is built from the same model: a
field the domain gains reaches agents without a change here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

from mcp_types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from todo_api.tasks.repository import TaskRepository, Written
from todo_api.tasks.rules import InvalidTask
from todo_api.tasks.schemas import MAX_TASK_ID, TaskCreate, TaskQuery, TaskRead, TaskUpdate

Fields = TypeVar("Fields", bound=BaseModel)
Model = TypeVar("Model", bound=BaseModel)

TasksOf = Callable[[str], TaskRepository]
"""The user's own tasks (raises DatabaseNotReady before the database is migrated)."""

USER_ID = "user_id"
TASK_ID = "task_id"


class ToolFailure(Exception):
    """A call the agent can correct or retry; the message, as the tool's result, says how."""


class TaskReceipt(BaseModel):
    task_id: int = Field(description="The task's id")
    status: Literal["created", "completed", "updated", "deleted"]
    title: str = Field(description="The task's title")
    next_task_id: int | None = Field(
        default=None,
        description="Only when completing a recurring task created its next occurrence: "
        "that task's id",
    )


class TaskPage(BaseModel):
    tasks: list[TaskRead] = Field(description="The tasks on this page, as the REST API lists them")
    total: int = Field(description="How many of the user's tasks match, on all pages together")


class ListTasksArguments(TaskQuery):
    """The REST list's query (`GET /api/tasks`) as tool arguments: an argument the list does
    not know is refused rather than ignored, so a model never believes a filter applied."""

    model_config = ConfigDict(extra="forbid")


class NoFields(BaseModel):
    """A tool that takes no argument besides the task it acts on."""

    model_config = ConfigDict(extra="forbid")


class _TaskReference(BaseModel):
    model_config = ConfigDict(strict=True)

    task_id: int = Field(
        ge=1, le=MAX_TASK_ID, description="The task's id, as add_task or list_tasks gave it"
    )


_TASK_ID_SCHEMA = _TaskReference.model_json_schema()["properties"][TASK_ID]
_USER_ID_SCHEMA = {
    "type": "string",
    "description": "Optional. The user is always the signed-in one; if given, it must be "
    "their id, or the call fails.",
}


@dataclass(frozen=True, kw_only=True)
class TaskTool(ABC, Generic[Fields]):
    """One tool: its name and description for a model, and the domain model its arguments must
    satisfy, besides `user_id` (checked against the caller before the call) and, for a tool that
    acts on one task, `task_id`."""

    name: str
    description: str
    fields: type[Fields]
    annotations: ToolAnnotations
    acts_on_one_task: ClassVar[bool] = False

    def input_schema(self) -> dict[str, Any]:
        schema = self.fields.model_json_schema()
        schema.pop("title", None)
        properties, required = schema.get("properties", {}), schema.get("required", [])
        if self.acts_on_one_task:
            properties, required = {TASK_ID: _TASK_ID_SCHEMA, **properties}, [TASK_ID, *required]
        properties[USER_ID] = _USER_ID_SCHEMA
        return schema | {"properties": properties, "required": required}

    @abstractmethod
    def output_schema(self) -> dict[str, Any]: ...

    @abstractmethod
    async def call(self, tasks_of: TasksOf, user_id: str, arguments: dict[str, Any]) -> BaseModel:
        """Validate every argument, then act on the user's tasks; ToolFailure names each invalid
        argument."""


@dataclass(frozen=True, kw_only=True)
class ListTool(TaskTool[Fields]):
    """A tool on the user's tasks as a whole."""

    result: type[BaseModel]
    run: Callable[[TaskRepository, Fields], Awaitable[BaseModel]]

    def output_schema(self) -> dict[str, Any]:
        return self.result.model_json_schema()

    async def call(self, tasks_of: TasksOf, user_id: str, arguments: dict[str, Any]) -> BaseModel:
        problems: list[ErrorDetails] = []
        fields = _validated(self.fields, _without(arguments, USER_ID), problems)
        if fields is None:
            raise ToolFailure(_described(problems))
        with _rules_as_failures():
            return await self.run(tasks_of(user_id), fields)


@dataclass(frozen=True, kw_only=True)
class OneTaskTool(TaskTool[Fields]):
    """A tool that changes one task and answers with a receipt naming it."""

    acts_on_one_task = True
    change: Callable[[TaskRepository, int, Fields], Awaitable[Written | None]]
    status: Literal["completed", "updated", "deleted"]

    def output_schema(self) -> dict[str, Any]:
        return TaskReceipt.model_json_schema()

    async def call(self, tasks_of: TasksOf, user_id: str, arguments: dict[str, Any]) -> BaseModel:
        problems: list[ErrorDetails] = []
        named = {TASK_ID: arguments[TASK_ID]} if TASK_ID in arguments else {}
        reference = _validated(_TaskReference, named, problems)
        fields = _validated(self.fields, _without(arguments, USER_ID, TASK_ID), problems)
        if reference is None or fields is None:
            raise ToolFailure(_described(problems))
        with _rules_as_failures():
            written = await self.change(tasks_of(user_id), reference.task_id, fields)
        if written is None:
            # Another user's task reads exactly like a missing one.
            raise ToolFailure(f"Task {reference.task_id} not found")
        receipt = TaskReceipt(
            task_id=written.task["id"], status=self.status, title=written.task["title"]
        )
        if written.next_occurrence_id is not None:
            receipt.next_task_id = written.next_occurrence_id
        return receipt


@contextmanager
def _rules_as_failures() -> Iterator[None]:
    """A rule spanning several fields, broken (a recurring task without a due date): reported
    like any other invalid argument."""
    try:
        yield
    except InvalidTask as error:
        raise ToolFailure(f"Invalid arguments: {error.field}: {error.message}") from None


def _without(arguments: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: value for name, value in arguments.items() if name not in names}


def _validated(
    model: type[Model], arguments: dict[str, Any], problems: list[ErrorDetails]
) -> Model | None:
    try:
        return model.model_validate(arguments)
    except ValidationError as error:
        problems.extend(error.errors(include_url=False))
        return None


def _described(problems: list[ErrorDetails]) -> str:
    """Validation errors as one line an agent can act on: each names the argument."""
    parts = []
    for problem in problems:
        where = ".".join(str(part) for part in problem["loc"])
        parts.append(f"{where}: {problem['msg']}" if where else problem["msg"])
    return "Invalid arguments: " + "; ".join(parts)


async def _add(tasks: TaskRepository, fields: TaskCreate) -> TaskReceipt:
    task = await tasks.create(fields)
    return TaskReceipt(task_id=task["id"], status="created", title=task["title"])


async def _list(tasks: TaskRepository, query: ListTasksArguments) -> TaskPage:
    page, total = await tasks.list(query)
    return TaskPage(tasks=[TaskRead.model_validate(task) for task in page], total=total)


async def _complete(tasks: TaskRepository, task_id: int, _fields: NoFields) -> Written | None:
    return await tasks.set_completed(task_id, True)


async def _update(tasks: TaskRepository, task_id: int, fields: TaskUpdate) -> Written | None:
    return await tasks.update(task_id, fields.changes())


async def _delete(tasks: TaskRepository, task_id: int, _fields: NoFields) -> Written | None:
    task = await tasks.delete(task_id)
    return None if task is None else Written(task)


# What each tool is for, told to the model that picks the tool and fills in its arguments.
_WHO = (
    " The tasks are always the signed-in user's own; `user_id` is optional and, if given, "
    "must be that user's id."
)
_WHEN = (
    'RFC 3339 date-times with an offset, e.g. "2026-01-09T17:00:00+01:00" or '
    '"2026-01-09T16:00:00Z"; a bare date or a time without an offset is refused, so work out '
    "the user's offset first"
)
_ADD = (
    "Create a task for the signed-in user. `title` says what to do (1 to 200 characters). "
    "Optional: `description` (details, at most 2000 characters); `priority` "
    '"low", "medium" (the default) or "high"; `tags`, short labels such as ["work", "errands"] '
    "(lower-cased, at most 20); `due_at` and `remind_at`, " + _WHEN + "; `recurrence`, an "
    'RFC 5545 RRULE such as "FREQ=WEEKLY;BYDAY=FR" or "FREQ=MONTHLY;BYMONTHDAY=1" (needs a '
    "`due_at`; completing the task schedules the next one); `timezone`, the IANA zone the "
    'recurrence keeps its local time in, e.g. "Europe/Berlin" (default "UTC"). Returns the '
    "new task's id, which the other tools take as `task_id`. "
    'Example: {"title": "Weekly review", "priority": "high", "tags": ["work"], '
    '"due_at": "2026-01-09T16:00:00+01:00", "recurrence": "FREQ=WEEKLY;BYDAY=FR", '
    '"timezone": "Europe/Berlin"} returns '
    '{"task_id": 7, "status": "created", "title": "Weekly review"}.' + _WHO
)
_LIST = (
    "List the signed-in user's tasks as full task objects (id, title, description, completed, "
    "completed_at, priority, tags, due_at, remind_at, recurrence, timezone, version, "
    "created_at, updated_at; times in UTC with Z). Optional filters, all applied together: "
    '`status` "pending" (open), "completed" or "all" (the default); `q`, words that must all '
    'occur in the title or description; `priority`, any of e.g. ["high", "medium"]; `tag`, all '
    'of e.g. ["work"]; `due_after` and `due_before`, ' + _WHEN + "; `overdue` true for open "
    "tasks past their due time; `has_due` true or false. `sort`: "
    '"-created_at" (newest first, the default), "due_at" (soonest first, undated last), '
    '"-priority" (high first), "title", "updated_at"; a leading "-" means descending. At most '
    "`limit` tasks (default 100, at most 1000) after skipping `offset`; `total` counts every "
    "match. Use it to find a task's id before completing, changing or deleting it. "
    'Example: {"status": "pending", "overdue": true, "sort": "due_at"} returns '
    '{"tasks": [{"id": 7, "title": "Weekly review", "completed": false, "priority": "high", '
    '"due_at": "2026-01-09T15:00:00Z", ...}], "total": 1}.' + _WHO
)
_COMPLETE = (
    "Mark a task as done: sets completed to true (calling it again changes nothing). Completing "
    "a recurring task creates its next occurrence, whose id comes back as `next_task_id`. To "
    'reopen a task, use update_task with {"completed": false}. '
    'Example: {"task_id": 7} returns {"task_id": 7, "status": "completed", '
    '"title": "Weekly review", "next_task_id": 8}.' + _WHO
)
_UPDATE = (
    "Change a task: give its `task_id` and only the fields to change; the others keep their "
    "value. Any of `title`, `description`, `completed` (true or false), `priority`, `tags` "
    "(the new list; [] removes them all), `due_at`, `remind_at`, `recurrence`, `timezone`, in "
    "the formats add_task describes; null removes `description`, `due_at`, `remind_at` or "
    "`recurrence`. "
    'Example: {"task_id": 7, "due_at": "2026-01-10T09:00:00+01:00", "priority": "high"} '
    'returns {"task_id": 7, "status": "updated", "title": "Weekly review"}.' + _WHO
)
_DELETE = (
    "Delete a task for good. There is no undo: only when the user asked for it. "
    'Example: {"task_id": 7} returns {"task_id": 7, "status": "deleted", "title": "Buy milk"}.'
    + _WHO
)

TOOLS: dict[str, TaskTool[Any]] = {
    tool.name: tool
    for tool in (
        ListTool(
            name="add_task",
            description=_ADD,
            fields=TaskCreate,
            result=TaskReceipt,
            annotations=ToolAnnotations(
                title="Add a task", destructive_hint=False, idempotent_hint=False
            ),
            run=_add,
        ),
        ListTool(
            name="list_tasks",
            description=_LIST,
            fields=ListTasksArguments,
            result=TaskPage,
            annotations=ToolAnnotations(title="List tasks", read_only_hint=True),
            run=_list,
        ),
        OneTaskTool(
            name="complete_task",
            description=_COMPLETE,
            fields=NoFields,
            annotations=ToolAnnotations(
                title="Complete a task", destructive_hint=False, idempotent_hint=True
            ),
            change=_complete,
            status="completed",
        ),
        OneTaskTool(
            name="update_task",
            description=_UPDATE,
            fields=TaskUpdate,
            annotations=ToolAnnotations(
                title="Update a task", destructive_hint=False, idempotent_hint=True
            ),
            change=_update,
            status="updated",
        ),
        OneTaskTool(
            name="delete_task",
            description=_DELETE,
            fields=NoFields,
            annotations=ToolAnnotations(
                title="Delete a task", destructive_hint=True, idempotent_hint=True
            ),
            change=_delete,
            status="deleted",
        ),
    )
}
