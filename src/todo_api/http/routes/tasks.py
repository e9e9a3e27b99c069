"""The task endpoints: thin handlers over the caller's own TaskRepository.

Each handler is served at two paths: `/api/tasks...`, and the hackathon guide's
`/api/{user_id}/tasks...`, where the path's user id must be the token's subject (`403`
otherwise, before anything is read or written). The user is always the token's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import URL

from todo_api.http.dependencies import UserTasks
from todo_api.http.errors import API_ERROR_RESPONSES, ErrorDetail
from todo_api.http.idempotency import IDEMPOTENCY_RESPONSES, IdempotencyKey, written_once
from todo_api.http.list_query import LIST_OPENAPI, list_query
from todo_api.http.preconditions import (
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    IfMatch,
    IfNoneMatch,
    etag,
    not_modified,
    not_modified_response,
    version_required,
)
from todo_api.http.task_responses import around_id, task_json, task_response
from todo_api.tasks.idempotency import CreatedResponse, IdempotentWrites, StoredResponse
from todo_api.tasks.repository import (
    TaskRepository,
    Written,
    completion,
    create_parameters,
    created_task,
)
from todo_api.tasks.rows import Task, task_from_row
from todo_api.tasks.rules import InvalidTask
from todo_api.tasks.schemas import (
    MAX_TASK_ID,
    CompletionUpdate,
    TaskCreate,
    TaskQuery,
    TaskRead,
    TaskUpdate,
)

TASKS_PATH = "/api/tasks"
GUIDE_TASKS_PATH = "/api/{user_id}/tasks"

router = APIRouter(responses=API_ERROR_RESPONSES)

TaskId = Annotated[int, Path(ge=1, le=MAX_TASK_ID, description="The task's id")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No such task among the caller's tasks"}
}
NAMES_NEXT_OCCURRENCE = (
    'The task; when the write completed a recurring task, `Link: <...>; rel="next-occurrence"` '
    "names the next occurrence it created"
)
NOT_THE_CALLER = "The user id in the path is not the signed-in user's (the token's subject)"


async def _path_names_the_caller(
    user_id: Annotated[
        str, Path(description="The signed-in user's id: must equal the token's `sub`")
    ],
    tasks: UserTasks,
) -> None:
    # The same dependency as the handler's, so FastAPI resolves it once per request: the token
    # is verified first (401 before 403), and the path is compared before any statement runs.
    if user_id != tasks.user_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=NOT_THE_CALLER)


FORBIDDEN: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorDetail, "description": NOT_THE_CALLER}
}

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def _serve(path: str, method: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
    """Serve the decorated handler at `/api/tasks<path>` and `/api/{user_id}/tasks<path>`."""
    return serve_on(router, path, method, **options)


def serve_on(
    target: APIRouter, path: str, method: str, **options: Any
) -> Callable[[Endpoint], Endpoint]:
    """`_serve` on another router (one included before this one, whose paths the
    `/{task_id}` routes would otherwise take)."""
    responses = options.pop("responses", {})

    def register(endpoint: Endpoint) -> Endpoint:
        target.add_api_route(
            TASKS_PATH + path,
            endpoint,
            methods=[method],
            tags=["tasks"],
            responses=responses,
            **options,
        )
        target.add_api_route(
            GUIDE_TASKS_PATH + path,
            endpoint,
            methods=[method],
            tags=["tasks at the guide's paths"],
            dependencies=[Depends(_path_names_the_caller)],
            responses=responses | FORBIDDEN,
            **options,
        )
        return endpoint

    return register


def task_location(request: Request, task_id: int) -> str:
    """The path of a task under the same prefix (the guide's or not) the request was made to."""
    return f"{_tasks_prefix(request)}{task_id}"


def _tasks_prefix(request: Request) -> str:
    """A task's path under the request's prefix, up to its id."""
    owner = request.path_params.get("user_id")
    collection = TASKS_PATH if owner is None else f"/api/{quote(owner, safe='')}/tasks"
    return f"{request.scope.get('root_path', '')}{collection}/"


def _found(task: Task | None) -> Task:
    # Another user's task and a missing one answer alike: nothing reveals that the id exists.
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Task not found")
    return task


@contextmanager
def _field_errors() -> Iterator[None]:
    """A rule spanning several fields, broken: a 422 naming the field, like any other."""
    try:
        yield
    except InvalidTask as error:
        problem = {"type": "invalid_task", "loc": ("body", error.field), "msg": error.message}
        raise RequestValidationError([problem | {"input": None}]) from None


def _written(request: Request, written: Written | None) -> Response:
    """The task a write left; the next occurrence it created, if any, named in `Link`."""
    task = _found(None if written is None else written.task)
    headers = {"ETag": etag(task)}
    if written is not None and written.next_occurrence_id is not None:
        location = task_location(request, written.next_occurrence_id)
        headers["Link"] = f'<{location}>; rel="next-occurrence"'
    return task_response(task, headers=headers)


@_serve(
    "",
    "GET",
    response_model=list[TaskRead],
    summary="List the caller's tasks: filtered, searched, sorted, paged",
    response_description="A page of tasks; `X-Total-Count` and `Link` describe the rest",
    openapi_extra=LIST_OPENAPI,
)
async def list_tasks(
    request: Request, tasks: UserTasks, query: Annotated[TaskQuery, Depends(list_query)]
) -> Any:
    items, total = await tasks.list(query)
    headers = {"X-Total-Count": str(total)}
    links = pagination_links(request.url, total=total, limit=query.limit, offset=query.offset)
    if links:
        headers["Link"] = links
    return task_response(items, headers=headers)


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


@_serve(
    "",
    "POST",
    response_model=TaskRead,
    status_code=status.HTTP_201_CREATED,
    responses=IDEMPOTENCY_RESPONSES,
    summary="Create a task",
    response_description="The new task; `Location` names it",
)
async def create_task(
    request: Request,
    tasks: UserTasks,
    body: TaskCreate,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    def created(task: Task) -> Response:
        # Written out: url_for searches every route and builds a whole URL, a tenth of a
        # create's CPU time.
        headers = {"Location": task_location(request, task["id"]), "ETag": etag(task)}
        return task_response(task, status_code=status.HTTP_201_CREATED, headers=headers)

    async def create(repository: TaskRepository) -> Response:
        with _field_errors():
            return created(await repository.create(body))

    async def create_once(store: IdempotentWrites, key: str, fingerprint: bytes) -> Response | None:
        if body.tags:
            return None  # the tags' rows: a statement of their own, in the transaction
        with _field_errors():
            params = create_parameters(body, tasks.user_id, datetime.now(UTC))
        # The response stored is the one the new task will get, worked out from the values
        # the statement writes: only its id is left to the statement. The first answer is made
        # from the row written, like any other.
        head, tail = around_id(created_task(params, task_id=0))
        response = CreatedResponse(head, tail, _tasks_prefix(request))
        row = await store.create(key, fingerprint, params, response)
        return None if row is None else created(task_from_row(row))

    return await written_once(request, idempotency_key, tasks, create, create_once)


@_serve(
    "/{task_id}",
    "GET",
    response_model=TaskRead,
    responses=NOT_FOUND | NOT_MODIFIED,
    summary="Get one task",
)
async def get_task(task_id: TaskId, tasks: UserTasks, if_none_match: IfNoneMatch = None) -> Any:
    task = _found(await tasks.get(task_id))
    if not_modified(if_none_match, task):
        return not_modified_response(task)
    return task_response(task, headers={"ETag": etag(task)})


@_serve(
    "/{task_id}",
    "PUT",
    response_model=TaskRead,
    responses=NOT_FOUND | PRECONDITION_FAILED,
    summary="Update any of a task's writable fields",
    response_description=NAMES_NEXT_OCCURRENCE,
)
async def update_task(
    task_id: TaskId,
    request: Request,
    tasks: UserTasks,
    body: TaskUpdate,
    if_match: IfMatch = None,
) -> Any:
    version = await version_required(if_match, tasks, task_id)
    with _field_errors():
        written = await tasks.update(task_id, body.changes(), if_version=version)
    return _written(request, written)


@_serve(
    "/{task_id}/complete",
    "PATCH",
    response_model=TaskRead,
    responses=NOT_FOUND | PRECONDITION_FAILED | IDEMPOTENCY_RESPONSES,
    summary='Toggle completion, or set it with {"completed": true|false}',
    response_description=NAMES_NEXT_OCCURRENCE,
)
async def complete_task(
    task_id: TaskId,
    request: Request,
    tasks: UserTasks,
    body: Annotated[CompletionUpdate | None, Body()] = None,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    completed = body.completed if body is not None else None

    async def complete(repository: TaskRepository) -> Response:
        version = await version_required(if_match, repository, task_id)
        written = await repository.set_completed(task_id, completed, if_version=version)
        return _written(request, written)

    async def complete_once(
        store: IdempotentWrites, key: str, fingerprint: bytes
    ) -> Response | None:
        if if_match is not None:
            return None  # a conditional write, and its 400 or 412: in the transaction
        current = await tasks.stored_row(task_id)
        if current is None or current["recurrence"] is not None:
            return None  # a 404, or a next occurrence to create: in the transaction
        now = datetime.now(UTC)
        task = completion(current, completed, now)
        response = StoredResponse(status.HTTP_200_OK, task_json(task), etag=etag(task))
        row = await store.complete(
            key,
            fingerprint,
            task_id,
            completed,
            read_version=current["version"],
            now=now,
            response=response,
        )
        return None if row is None else _written(request, Written(task_from_row(row)))

    return await written_once(request, idempotency_key, tasks, complete, complete_once)


@_serve(
    "/{task_id}",
    "DELETE",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=NOT_FOUND | PRECONDITION_FAILED,
    summary="Delete a task",
)
async def delete_task(task_id: TaskId, tasks: UserTasks, if_match: IfMatch = None) -> Response:
    version = await version_required(if_match, tasks, task_id)
    _found(await tasks.delete(task_id, if_version=version))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
