"""GET /api/tags: the caller's tags, with how many of the caller's tasks carry each."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from todo_api.http.dependencies import UserTasks
from todo_api.http.errors import API_ERROR_RESPONSES
from todo_api.tasks.schemas import TagCount

router = APIRouter(prefix="/api/tags", tags=["tags"], responses=API_ERROR_RESPONSES)


@router.get("", response_model=list[TagCount], summary="The caller's tags, by name")
async def list_tags(tasks: UserTasks) -> Any:
    return await tasks.tags()
