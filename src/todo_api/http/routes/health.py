"""Liveness and readiness, for load balancers and orchestrators; no token needed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from todo_api import __version__
from todo_api.database import is_unavailable
from todo_api.http.dependencies import AppServices
from todo_api.http.errors import ErrorDetail, database_unavailable_response

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process answers (does not touch the database)")
async def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get(
    "/health/ready",
    summary="Readiness: the database answers",
    responses={503: {"model": ErrorDetail, "description": "The database does not answer"}},
)
async def ready(services: AppServices) -> Any:
    if not services.database.migrated:
        return database_unavailable_response()
    try:
        await services.runner.ping(services.settings.db_connect_timeout_seconds + 1)
    except Exception as error:
        if not is_unavailable(error):
            raise
        return database_unavailable_response()
    return JSONResponse({"status": "ready", "version": __version__})
