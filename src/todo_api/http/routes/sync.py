"""The change feed and the live stream of changes: `/api/tasks/changes` and `/api/tasks/stream`.

Their router is included before the task routes, whose `/{task_id}` would otherwise take these
paths. The feed is served at the guide's `/api/{user_id}/tasks/changes` too; the stream only at
`/api/tasks/stream`, where EventSource's `?access_token=` stands in for the header.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.routing import Route

from todo_api.database import DATABASE_ERRORS, is_unavailable
from todo_api.http.dependencies import StreamCaller, UserTasks, services_of
from todo_api.http.errors import API_ERROR_RESPONSES, ErrorDetail
from todo_api.http.routes.tasks import GUIDE_TASKS_PATH, TASKS_PATH, serve_on
from todo_api.live.hub import TooManyStreams
from todo_api.live.stream import STREAM_PAGE, follow
from todo_api.tasks.feed import (
    PAGE_MAX,
    ChangeFeed,
    ChangesPage,
    CursorGone,
    FeedEntry,
    FeedPage,
    feed_item_json,
)

logger = logging.getLogger("todo_api.live")

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


TOO_MANY_STREAMS: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorDetail, "description": "The caller has too many streams open already"}
}
EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}
}
STREAM_RETRY_AFTER_SECONDS = 5


@router.get(
    TASKS_PATH + "/stream",
    tags=["tasks"],
    responses=GONE | TOO_MANY_STREAMS | EVENT_STREAM,
    response_class=EventSourceResponse,
    summary="Live changes of the caller's tasks, as server-sent events",
    response_description=(
        "`event: change` or `event: reminder`, `data:` a feed item, `id:` the cursor after it"
    ),
)
async def stream_changes(
    request: Request,
    caller: StreamCaller,
    since: Since = None,
    last_event_id: Annotated[
        str | None,
        Header(description="Sent by EventSource when it reconnects: resume after that event"),
    ] = None,
    access_token: Annotated[
        str | None,
        Query(description="The bearer token, for EventSource, which cannot send headers"),
    ] = None,
) -> EventSourceResponse:
    services = services_of(request)
    feed = ChangeFeed(services.runner, caller.user_id)
    try:
        # Subscribed before the first read: a change committed meanwhile wakes the stream.
        subscription = services.streams.subscribe(caller.user_id)
    except TooManyStreams:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"At most {services.settings.streams_per_user} open streams per user; "
            "close one first",
            headers={"Retry-After": str(STREAM_RETRY_AFTER_SECONDS)},
        ) from None
    try:
        resume_from = last_event_id or since
        if resume_from is None:
            first = FeedPage([], await feed.head(), has_more=False)
        else:
            first = await feed.read(resume_from, limit=STREAM_PAGE)
    except CursorGone:
        subscription.close()
        raise cursor_gone() from None
    except BaseException:
        subscription.close()
        raise
    events = follow(feed, subscription, first, ends_at=caller.valid_until)
    return EventSourceResponse(
        _as_server_sent_events(events), ping=services.settings.stream_keepalive_seconds
    )


async def _as_server_sent_events(entries: AsyncIterator[FeedEntry]) -> AsyncIterator[Any]:
    try:
        async for entry in entries:
            yield ServerSentEvent(
                data=feed_item_json.dump_json(entry.item).decode(),
                event=entry.kind,
                id=entry.cursor,
            )
    except DATABASE_ERRORS as error:
        if not is_unavailable(error):
            raise
        # The client reconnects with Last-Event-ID once the database is back.
        logger.warning("Live stream ended: database unavailable (%r)", error)


async def _only_get(_request: Request) -> Response:
    return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": "GET"})


_NOT_GET = ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Without these, the task routes' `/{task_id}` would take other methods on these paths (and
# answer 422 for an id that is not a number).
for _path in (TASKS_PATH + "/changes", GUIDE_TASKS_PATH + "/changes", TASKS_PATH + "/stream"):
    router.routes.append(Route(_path, _only_get, methods=_NOT_GET, include_in_schema=False))
