"""ASGI middleware: request ids and access log, the body size limit, and the last-resort 500."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from todo_api.http.error_response import ErrorResponse
from todo_api.logs import RequestContext, current_request

access_log = logging.getLogger("todo_api.access")
error_log = logging.getLogger("todo_api.errors")

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is echoed only when it cannot forge or break a log line.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


class _HTTPMiddleware:
    """Pure ASGI middleware that acts on HTTP requests and passes anything else through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class RequestContextMiddleware(_HTTPMiddleware):
    """Gives every request an id, returns it in `X-Request-ID`, and logs the request once."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        incoming = Headers(scope=scope).get(REQUEST_ID_HEADER)
        request_id = incoming if incoming and _SANE_REQUEST_ID.fullmatch(incoming) else None
        context = RequestContext(request_id or uuid.uuid4().hex)
        token = current_request.set(context)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, context.request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
            access_log.info(
                "%s %s %d %.1fms user=%s",
                scope["method"],
                scope["path"],
                status,
                duration_ms,
                context.user_id or "-",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(duration_ms, 2),
                    "user_id": context.user_id,
                },
            )
            current_request.reset(token)


class ErrorBoundaryMiddleware(_HTTPMiddleware):
    """Turns an unexpected exception into a bare 500; the cause goes to the log only."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        response_started = False

        async def send_tracking(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            error_log.exception("Unhandled error in %s %s", scope["method"], scope["path"])
            if response_started:
                raise
            response = JSONResponse({"detail": "Internal server error"}, status_code=500)
            await response(scope, receive, send)


class BodySizeLimitMiddleware(_HTTPMiddleware):
    """Refuses request bodies over `max_bytes` with a JSON 413, announced or streamed.

    A declared Content-Length is judged before anything is read; a streamed body is counted as
    it arrives, and the handler reading it gets the 413 instead of the rest.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes
        self.detail = f"Request body is larger than the limit of {max_bytes} bytes"

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": self.detail}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(status_code=413, detail=self.detail)
            return message

        await self.app(scope, receive_counted, send)


class CORSJSONErrorsMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered as JSON `{"detail": ...}` like
    every other error (Starlette answers it in plain text)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {
            name: value
            for name, value in response.headers.items()
            if name.lower() not in ("content-type", "content-length")
        }
        reason = bytes(response.body).decode()  # "Disallowed CORS origin, method, headers"
        detail = f"{reason}: this origin, method or header is not allowed (CORS_ORIGINS)"
        return ErrorResponse({"detail": detail}, status_code=response.status_code, headers=headers)
