"""The change feed and the live stream of changes: `/api/tasks/changes` and `/api/tasks/stream`.

Their router is included before the task routes, whose `/{task_id}` would otherwise take these
paths.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status

from todo_api.http.dependencies import UserTasks, services_of
from todo_api.http.errors import API_ERROR_RESPONSES, ErrorDetail
from todo_api.http.routes.tasks import serve_on
from todo_api.tasks.feed import PAGE_MAX, ChangeFeed, ChangesPage, CursorGone

router = APIRouter(responses=API_ERROR_RESPONSES)

GONE: dict[int | str, dict[str, Any]] = {
    410: {"model": ErrorDetail, "description": "The cursor is malformed, unknown or too old"}
}
Since = Annotated[
    str | None,
    Query(description="A cursor from an earlier answer; without it, every task as an upsert"),
]


def cursor_gone() -> HTTPException:
    return HTTPException(status.HTTP_410_GONE, detail=CursorGone.detail)


@serve_on(
    router,
    "/changes",
    "GET",
    response_model=ChangesPage,
    responses=GONE,
    summary="Changes of the caller's tasks after a cursor, in commit order",
)
async def read_changes(
    request: Request,
    tasks: UserTasks,
    since: Since = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX, description="Page size")] = 100,
) -> Any:
    feed = ChangeFeed(services_of(request).runner, tasks.user_id)
    try:
        page = await feed.read(since, limit=limit)
    except CursorGone:
        raise cursor_gone() from None
    return page.as_response()
