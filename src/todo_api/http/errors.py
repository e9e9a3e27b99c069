"""How failures become responses: every error is JSON `{"detail": ...}` with the right status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.routing import Match

from todo_api.auth import AuthError, KeysUnavailableError
from todo_api.database import DATABASE_ERRORS, is_unavailable

logger = logging.getLogger("todo_api.errors")

RETRY_AFTER_SECONDS = 2
DATABASE_UNAVAILABLE = "Database is unavailable; retry shortly"


class ErrorDetail(BaseModel):
    detail: str


# Documented on every API operation, so clients (and schema checkers) know each can happen.
API_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorDetail, "description": "The body is not valid JSON"},
    401: {"model": ErrorDetail, "description": "Missing or invalid bearer token"},
    413: {"model": ErrorDetail, "description": "The body is larger than 1 MiB"},
    415: {"model": ErrorDetail, "description": "The body is not sent as application/json"},
    429: {
        "model": ErrorDetail,
        "description": "Over the caller's rate limit; see Retry-After and RateLimit",
    },
    503: {
        "model": ErrorDetail,
        "description": "The database, or the token issuer's keys, are unavailable; see Retry-After",
    },
}


def database_unavailable_response() -> JSONResponse:
    return JSONResponse(
        {"detail": DATABASE_UNAVAILABLE},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _auth_failed(_request: Request, error: Exception) -> Response:
    assert isinstance(error, AuthError)
    return JSONResponse(
        {"detail": error.detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


async def _keys_unavailable(request: Request, error: Exception) -> Response:
    assert isinstance(error, KeysUnavailableError)
    logger.warning("Token keys unavailable on %s %s", request.method, request.url.path)
    return JSONResponse(
        {"detail": error.detail},
        status_code=503,
        headers={"Retry-After": str(error.retry_after_seconds)},
    )


async def _invalid_request(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    for problem in problems:
        if problem["type"] == "json_invalid":
            reason = problem.get("ctx", {}).get("error", "syntax error")
            position = problem["loc"][-1]
            return JSONResponse(
                {"detail": f"Request body is not valid JSON: {reason} (at character {position})"},
                status_code=400,
            )
    if _sent_non_json_body(request, problems):
        return JSONResponse(
            {"detail": "Send the request body as JSON with 'Content-Type: application/json'"},
            status_code=415,
        )
    return await request_validation_exception_handler(request, error)


def _sent_non_json_body(request: Request, problems: Any) -> bool:
    headers = request.headers
    has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    is_json = media_type.endswith(("/json", "+json"))
    return has_body and not is_json and any(problem["loc"][:1] == ("body",) for problem in problems)


async def _method_not_allowed(request: Request, _error: Exception) -> Response:
    # Starlette's Allow names only the first route matching the path; a path served by several
    # routes (GET and POST on /api/tasks) must list them all.
    allowed = [
        method
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    ]
    return JSONResponse(
        {"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": ", ".join(allowed)}
    )


async def _database_failed(request: Request, error: Exception) -> Response:
    if not is_unavailable(error):
        raise error
    logger.warning("Database unavailable on %s %s: %r", request.method, request.url.path, error)
    return database_unavailable_response()


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AuthError, _auth_failed)
    app.add_exception_handler(KeysUnavailableError, _keys_unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(405, _method_not_allowed)
    for error_type in DATABASE_ERRORS:
        app.add_exception_handler(error_type, _database_failed)
