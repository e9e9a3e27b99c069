"""Error responses that render whatever the client sent, including what they repeat of it.

A 422 repeats the input it refuses, and that input can be anything JSON carries and more:
Python's json reads `NaN` and `Infinity`, turns `1e999` into an infinite float and `"\\ud800"`
into a string that UTF-8 cannot encode. The standard JSON response fails on each of them, and a
failed error response is a 500. Here, error bodies are ASCII (such a string leaves as the same
`\\ud800` escape it arrived as), non-finite numbers are shown as strings, and an input that
cannot be shown at all is left out of its error entry rather than failing the response.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from starlette.responses import JSONResponse

# Deeper input is not repeated: rendering it recurses once per level, and the parser accepts
# nesting nearly as deep as the interpreter's recursion limit.
MAX_ECHO_DEPTH = 32


class Unshowable(Exception):
    """The value cannot be repeated in a JSON error body."""


class ErrorResponse(JSONResponse):
    """`{"detail": ...}` as ASCII-only JSON: a lone surrogate in it cannot fail the response."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")


def showable(value: Any, depth: int = 0) -> Any:
    """`value` as plain JSON data an ErrorResponse can render, or Unshowable."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        # str() refuses integers longer than the interpreter's digit limit (4300 by default).
        if (limit := sys.get_int_max_str_digits()) and value.bit_length() > 3 * limit:
            raise Unshowable
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if depth >= MAX_ECHO_DEPTH:
        raise Unshowable
    if isinstance(value, dict):
        return {str(key): showable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [showable(item, depth + 1) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)  # an exception in a validation error's context, for one
