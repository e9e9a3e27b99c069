"""The task endpoints: thin handlers over the caller's own TaskRepository."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, Response, status
from starlette.datastructures import URL

from todo_api.http.dependencies import UserTasks
from todo_api.http.errors import API_ERROR_RESPONSES, ErrorDetail
from todo_api.tasks.repository import Task
from todo_api.tasks.schemas import CompletionUpdate, TaskCreate, TaskRead, TaskStatus, TaskUpdate

MAX_TASK_ID = 2**63 - 1
MAX_OFFSET = 2**31 - 1

router = APIRouter(prefix="/api/tasks", tags=["tasks"], responses=API_ERROR_RESPONSES)

TaskId = Annotated[int, Path(ge=1, le=MAX_TASK_ID, description="The task's id")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No such task among the caller's tasks"}
}


def _found(task: Task | None) -> Task:
    # Another user's task and a missing one answer alike: nothing reveals that the id exists.
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Task not found")
    return task


@router.get(
    "",
    response_model=list[TaskRead],
    summary="List the caller's tasks, newest first",
    response_description="A page of tasks; `X-Total-Count` and `Link` describe the rest",
)
async def list_tasks(
    request: Request,
    response: Response,
    tasks: UserTasks,
    status_filter: Annotated[
        TaskStatus, Query(alias="status", description="Which tasks to include")
    ] = TaskStatus.ALL,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size")] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Tasks to skip")] = 0,
) -> Any:
    items, total = await tasks.list(status_filter, limit=limit, offset=offset)
    response.headers["X-Total-Count"] = str(total)
    if link := pagination_links(request.url, total=total, limit=limit, offset=offset):
        response.headers["Link"] = link
    return items


def pagination_links(url: URL, *, total: int, limit: int, offset: int) -> str | None:
    """An RFC 8288 `Link` value with the next and previous pages, or None if there are none."""
    links = []
    if offset + limit < total:
        links.append(
            f'<{url.include_query_params(limit=limit, offset=offset + limit)}>; rel="next"'
        )
    if offset > 0:
        previous = max(min(offset - limit, total - limit), 0)
        links.append(f'<{url.include_query_params(limit=limit, offset=previous)}>; rel="prev"')
    return ", ".join(links) or None


@router.post(
    "",
    response_model=TaskRead,
    status_code=status.HTTP_201_CREATED,
    summary="Create a task",
    response_description="The new task; `Location` names it",
)
async def create_task(
    request: Request, response: Response, tasks: UserTasks, body: TaskCreate
) -> Any:
    task = await tasks.create(body)
    # The path of get_task, written out: url_for searches every route and builds a whole URL,
    # a tenth of a create's CPU time.
    response.headers["Location"] = (
        f"{request.scope.get('root_path', '')}{router.prefix}/{task['id']}"
    )
    return task


@router.get("/{task_id}", response_model=TaskRead, responses=NOT_FOUND, summary="Get one task")
async def get_task(task_id: TaskId, tasks: UserTasks) -> Any:
    return _found(await tasks.get(task_id))


@router.put(
    "/{task_id}",
    response_model=TaskRead,
    responses=NOT_FOUND,
    summary="Update a task's title, description or completion",
)
async def update_task(task_id: TaskId, tasks: UserTasks, body: TaskUpdate) -> Any:
    return _found(await tasks.update(task_id, body.changes()))


@router.patch(
    "/{task_id}/complete",
    response_model=TaskRead,
    responses=NOT_FOUND,
    summary='Toggle completion, or set it with {"completed": true|false}',
)
async def complete_task(
    task_id: TaskId, tasks: UserTasks, body: Annotated[CompletionUpdate | None, Body()] = None
) -> Any:
    completed = body.completed if body is not None else None
    return _found(await tasks.set_completed(task_id, completed))


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=NOT_FOUND,
    summary="Delete a task",
)
async def delete_task(task_id: TaskId, tasks: UserTasks) -> Response:
    if not await tasks.delete(task_id):
        _found(None)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
