"""Logging: readable text or JSON lines, each tagged with the id of the request it belongs to."""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from dataclasses import dataclass

from pythonjsonlogger.json import JsonFormatter

from todo_api.settings import Settings


@dataclass(slots=True)
class RequestContext:
    """What the log lines of one request share; the auth layer fills in the user."""

    request_id: str
    user_id: str | None = None


current_request: ContextVar[RequestContext | None] = ContextVar("current_request", default=None)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = current_request.get()
        record.request_id = context.request_id if context else "-"
        return True


class OneLineFormatter(logging.Formatter):
    """Text lines a client cannot split or forge: control characters in a message (a newline in
    a requested path or in a token's subject) are escaped. A traceback stays multi-line: it is
    appended after this, and written by the service, not sent by a client."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return _CONTROL_CHARACTER.sub(_escaped, super().formatMessage(record))


_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def _escaped(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"


def configure_logging(settings: Settings) -> None:
    """Route the service's and the server's loggers to one stderr handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if settings.log_json:
        handler.setFormatter(JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level"}))
    else:
        handler.setFormatter(OneLineFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # This service writes its own access line, with the user and the request id.
    logging.getLogger("uvicorn.access").disabled = True
    # Alembic announces each of its plugins at INFO on every run: start-up noise, not news.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # The MCP transport announces the end of every stateless exchange, one line per /mcp call.
    logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)


def tag_user(user_id: str) -> None:
    """Name the caller on the current request's log lines, its access line among them."""
    if context := current_request.get():
        context.user_id = user_id
