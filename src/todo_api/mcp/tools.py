"""The task tools: what each takes and returns, told for a model, and the domain call it makes.

A tool's arguments are validated by the domain's own input models (TaskCreate, TaskUpdate, ...),
exactly as the REST API validates a body, and its input schema is built from the same model: a
field the domain gains reaches agents without a change here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from mcp_types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError
from pydantic_core import ErrorDetails

from todo_api.tasks.repository import Task, TaskRepository
from todo_api.tasks.schemas import (
    MAX_OFFSET,
    MAX_TASK_ID,
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    TaskCreate,
    TaskRead,
    TaskStatus,
    TaskUpdate,
)

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


class TaskPage(BaseModel):
    tasks: list[TaskRead] = Field(description="The tasks on this page, as the REST API lists them")
    total: int = Field(description="How many of the user's tasks match, on all pages together")


class ListTasksArguments(BaseModel):
    """The list query the REST API takes (`GET /api/tasks`), as tool arguments."""

    model_config = ConfigDict(strict=True, extra="forbid")

    status: Annotated[TaskStatus, Strict(False)] = Field(
        TaskStatus.ALL, description='"pending" (open), "completed" or "all"'
    )
    limit: int = Field(PAGE_SIZE_DEFAULT, ge=1, le=PAGE_SIZE_MAX, description="Page size")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Tasks to skip, for the next pages")


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
        return await self.run(tasks_of(user_id), fields)


@dataclass(frozen=True, kw_only=True)
class OneTaskTool(TaskTool[Fields]):
    """A tool that changes one task and answers with a receipt naming it."""

    acts_on_one_task = True
    change: Callable[[TaskRepository, int, Fields], Awaitable[Task | None]]
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
        task = await self.change(tasks_of(user_id), reference.task_id, fields)
        if task is None:
            # Another user's task reads exactly like a missing one.
            raise ToolFailure(f"Task {reference.task_id} not found")
        return TaskReceipt(task_id=task["id"], status=self.status, title=task["title"])


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
    page, total = await tasks.list(query.status, limit=query.limit, offset=query.offset)
    return TaskPage(tasks=[TaskRead.model_validate(task) for task in page], total=total)


async def _complete(tasks: TaskRepository, task_id: int, _fields: NoFields) -> Task | None:
    return await tasks.set_completed(task_id, True)


async def _update(tasks: TaskRepository, task_id: int, fields: TaskUpdate) -> Task | None:
    return await tasks.update(task_id, fields.changes())


async def _delete(tasks: TaskRepository, task_id: int, _fields: NoFields) -> Task | None:
    return await tasks.delete(task_id)


# What each tool is for, told to the model that picks the tool and fills in its arguments.
_WHO = (
    " The tasks are always the signed-in user's own; `user_id` is optional and, if given, "
    "must be that user's id."
)
_ADD = (
    "Create a task for the signed-in user. `title` says what to do (1 to 200 characters); "
    "`description` holds any details the user gave (at most 2000 characters). Returns the new "
    "task's id, which the other tools take as `task_id`. "
    'Example: {"title": "Buy milk", "description": "Oat, 2 litres"} returns '
    '{"task_id": 7, "status": "created", "title": "Buy milk"}.' + _WHO
)
_LIST = (
    "List the signed-in user's tasks, newest first, each with its id, title, description, "
    'completed, and created_at/updated_at (RFC 3339, UTC). `status`: "pending" for open '
    'tasks, "completed", or "all" (the default). At most `limit` tasks (default 100, at most '
    "1000) after skipping `offset`; `total` counts all the matching tasks. Use it to find a "
    "task's id before completing, changing or deleting it. "
    'Example: {"status": "pending", "limit": 20} returns '
    '{"tasks": [{"id": 7, "title": "Buy milk", "completed": false, ...}], "total": 1}.' + _WHO
)
_COMPLETE = (
    "Mark a task as done: sets completed to true (calling it again changes nothing). To reopen "
    'a task, use update_task with {"completed": false}. '
    'Example: {"task_id": 7} returns {"task_id": 7, "status": "completed", "title": "Buy milk"}.'
    + _WHO
)
_UPDATE = (
    "Change a task: give its `task_id` and only the fields to change; the others keep their "
    "value. `title` (1 to 200 characters), `description` (at most 2000 characters; null "
    "removes it), `completed` (true or false). "
    'Example: {"task_id": 7, "title": "Buy oat milk", "description": null} returns '
    '{"task_id": 7, "status": "updated", "title": "Buy oat milk"}.' + _WHO
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
