"""How failures become responses: every error is JSON `{"detail": ...}` with the right status."""

from __future__ import annotations

import logging
import sys
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.utils import is_body_allowed_for_status_code
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match

from todo_api.auth import AuthError, KeysUnavailableError
from todo_api.database import DATABASE_ERRORS, is_unavailable
from todo_api.http.error_response import ErrorResponse, Unshowable, showable

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


def database_unavailable_response() -> ErrorResponse:
    return ErrorResponse(
        {"detail": DATABASE_UNAVAILABLE},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _auth_failed(_request: Request, error: Exception) -> Response:
    assert isinstance(error, AuthError)
    return ErrorResponse(
        {"detail": error.detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


async def _keys_unavailable(request: Request, error: Exception) -> Response:
    assert isinstance(error, KeysUnavailableError)
    logger.warning("Token keys unavailable on %s %s", request.method, request.url.path)
    return ErrorResponse(
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
            return _not_json(f"{reason} (at character {position})")
    if _sent_non_json_body(request, problems):
        return ErrorResponse(
            {"detail": "Send the request body as JSON with 'Content-Type: application/json'"},
            status_code=415,
        )
    return ErrorResponse({"detail": [_shown(problem) for problem in problems]}, status_code=422)


def _shown(problem: Any) -> Any:
    """A validation problem as JSON, with the input it names left out if it cannot be shown."""
    try:
        return showable(problem)
    except Unshowable:
        return showable({key: problem[key] for key in ("type", "loc", "msg") if key in problem})


def _not_json(reason: str) -> ErrorResponse:
    return ErrorResponse({"detail": f"Request body is not valid JSON: {reason}"}, status_code=400)


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
    return ErrorResponse(
        {"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": ", ".join(allowed)}
    )


async def _http_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 400 and (reason := _undecodable_json(error.__cause__)):
        return _not_json(reason)
    if not is_body_allowed_for_status_code(error.status_code):
        return Response(status_code=error.status_code, headers=error.headers)
    return ErrorResponse(
        {"detail": error.detail}, status_code=error.status_code, headers=error.headers
    )


def _undecodable_json(cause: BaseException | None) -> str | None:
    """Why Python's json could not decode a body that is not a plain syntax error, if it was that.

    FastAPI reports a syntax error as a validation error (handled above), and anything else
    the parser raises as a bare 400 chained to the parser's exception.
    """
    if isinstance(cause, RecursionError):
        return "arrays or objects are nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return f"it is not UTF-8 text ({cause.reason} at byte {cause.start})"
    if isinstance(cause, ValueError):  # int() refusing a literal over the digit limit
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    return None


async def _database_failed(request: Request, error: Exception) -> Response:
    if not is_unavailable(error):
        raise error
    logger.warning("Database unavailable on %s %s: %r", request.method, request.url.path, error)
    return database_unavailable_response()


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AuthError, _auth_failed)
    app.add_exception_handler(KeysUnavailableError, _keys_unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(405, _method_not_allowed)
    for error_type in DATABASE_ERRORS:
        app.add_exception_handler(error_type, _database_failed)
