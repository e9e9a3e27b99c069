"""Tasks written straight to a JSON response.

A task from the repository is already in its response shape (tasks.rows.task_from_row: TaskRead's
fields, in its order, with its types), so the handlers hand it to pydantic-core's serializer
themselves. Returned as a plain value, FastAPI would validate each task against the response
model and then serialize it, which for a page of 100 tasks was a third of a list's CPU time.
The routes keep `response_model` for the OpenAPI document; tests/test_task_json.py holds the
bytes written here to the model's own serialization.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi import Response, status
from pydantic_core import to_json

from todo_api.tasks.rows import Task


def task_response(
    content: Task | Sequence[Task],
    *,
    status_code: int = status.HTTP_200_OK,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(to_json(content), status_code, headers, media_type="application/json")


def task_json(task: Task) -> bytes:
    """One task's body, as `task_response` writes it."""
    return to_json(task)


_ID_ZERO = b'{"id":0'


def around_id(task: Task) -> tuple[bytes, bytes]:
    """The body of a task that has no id yet (`id` 0, the first field): the bytes before its
    id and after it, for the database to put the id between."""
    body = to_json(task | {"id": 0})
    assert body.startswith(_ID_ZERO)
    return _ID_ZERO[:-1], body[len(_ID_ZERO) :]
