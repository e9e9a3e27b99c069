"""Conditional requests (RFC 9110 section 13): a task's ETag is its version, `"<version>"`.

`If-None-Match` on a read compares weakly (`W/"3"` matches version 3) and answers 304 when a
tag matches; `If-Match` on a write compares strongly (a weak tag never matches) and lets the
write through only at a version it names, checked by the write's own statement
(TaskRepository's `if_version`). `*` matches any task that exists. A header that is not `*`
or a list of entity tags is a 400 naming the header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse

from todo_api.tasks.repository import TaskRepository

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description='Write only if the task is still at this version: `"<version>"` or `*`',
    ),
]
IfNoneMatch = Annotated[
    str | None,
    Header(
        alias="If-None-Match",
        description='`"<version>"` of the copy the client holds: 304 while it is current',
    ),
]

STALE = (
    "The task has changed since the version in If-Match; read it again (its ETag) "
    "and reapply the change"
)
PRECONDITION_FAILED: dict[int | str, dict[str, Any]] = {
    400: {"description": "If-Match or If-None-Match is not `*` or a list of entity tags"},
    412: {"description": "If-Match names another version than the task's; nothing changed"},
}
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "If-None-Match names the task's current version; no body"},
    400: PRECONDITION_FAILED[400],
}

_ENTITY_TAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*')


@dataclass(frozen=True, slots=True)
class _EntityTags:
    any: bool
    tags: tuple[tuple[bool, str], ...]  # (weak, opaque tag)


def _parse(name: str, value: str) -> _EntityTags:
    if value.strip() == "*":
        return _EntityTags(any=True, tags=())
    tags = []
    for part in value.split(","):
        if not part.strip():
            continue  # RFC 9110 list syntax tolerates empty elements
        match = _ENTITY_TAG.fullmatch(part)
        if match is None:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                detail=f'{name} must be * or a list of entity tags such as "3" (a task\'s ETag)',
            )
        tags.append((match.group(1) is not None, match.group(2)))
    if not tags:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"{name} is empty")
    return _EntityTags(any=False, tags=tuple(tags))


def etag(task: dict[str, Any]) -> str:
    return f'"{task["version"]}"'


def not_modified(if_none_match: str | None, task: dict[str, Any]) -> bool:
    """Whether the client's copy (If-None-Match) is the task as it is."""
    if if_none_match is None:
        return False
    wanted = _parse("If-None-Match", if_none_match)
    current = str(task["version"])
    return wanted.any or any(opaque == current for _weak, opaque in wanted.tags)


def not_modified_response(task: dict[str, Any]) -> Response:
    return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag(task)})


_VERSION = re.compile(r"[0-9]{1,18}")
_NO_VERSION = 0  # versions start at 1: a write conditioned on it never happens


async def version_required(if_match: str | None, tasks: TaskRepository, task_id: int) -> int | None:
    """The version a write must find (its `if_version`), or None for an unconditional one
    (no If-Match, or `*`: the write needs the task to exist anyway)."""
    if if_match is None:
        return None
    wanted = _parse("If-Match", if_match)
    if wanted.any:
        return None
    # Strong comparison: a weak tag, or one that is no version, matches nothing.
    versions = {
        int(opaque) for weak, opaque in wanted.tags if not weak and _VERSION.fullmatch(opaque)
    }
    if len(versions) == 1:
        return versions.pop()
    if not versions:
        return _NO_VERSION
    # Several: the one the task is at, if any, still checked by the write itself.
    task = await tasks.get(task_id)
    return task["version"] if task is not None and task["version"] in versions else _NO_VERSION


async def precondition_failed(_request: Request, _error: Exception) -> Response:
    return JSONResponse({"detail": STALE}, status_code=status.HTTP_412_PRECONDITION_FAILED)
