"""The list's query string read into a TaskQuery, and documented as FastAPI would document it.

Declared as `Annotated[TaskQuery, Query()]`, FastAPI works out each of the model's eleven fields'
types again on every request before it validates: about 0.1 ms, a tenth of a list. Here the
plain list (no query string, the most common request) gets the default query as it is, and any
other is validated by the model once, with the same rules FastAPI applies (a list field takes
every value of a repeated parameter, any other field the last one; unknown parameters are
ignored) and the same 422 (each error located at `("query", field)`). `LIST_OPENAPI` is what
FastAPI would have put in the OpenAPI document, for the route's `openapi_extra`.
"""

from __future__ import annotations

from typing import Any, get_origin

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from todo_api.tasks.schemas import TaskQuery

_PLAIN_LIST = TaskQuery.model_validate({})
_LIST_FIELDS = frozenset(
    name for name, field in TaskQuery.model_fields.items() if get_origin(field.annotation) is list
)


async def list_query(request: Request) -> TaskQuery:
    parameters = request.query_params
    if not parameters:
        return _PLAIN_LIST
    values: dict[str, Any] = {}
    for name in TaskQuery.model_fields:
        if name in _LIST_FIELDS:
            if found := parameters.getlist(name):
                values[name] = found
        elif (value := parameters.get(name)) is not None:
            values[name] = value
    try:
        return TaskQuery.model_validate(values)
    except ValidationError as error:
        problems = error.errors(include_url=False)
        raise RequestValidationError(
            [{**problem, "loc": ("query", *problem["loc"])} for problem in problems]
        ) from None


def _inline(schema: Any, definitions: dict[str, Any]) -> Any:
    """`schema` with its references to the model's own definitions written out."""
    if isinstance(schema, list):
        return [_inline(item, definitions) for item in schema]
    if not isinstance(schema, dict):
        return schema
    reference = schema.get("$ref", "")
    if reference.startswith("#/$defs/"):
        rest = {key: value for key, value in schema.items() if key != "$ref"}
        return _inline(definitions[reference.removeprefix("#/$defs/")], definitions) | rest
    return {key: _inline(value, definitions) for key, value in schema.items()}


def _query_parameters() -> list[dict[str, Any]]:
    schema = TaskQuery.model_json_schema()
    definitions = schema.get("$defs", {})
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": field["description"],
            "schema": _inline(field, definitions),
        }
        for name, field in schema["properties"].items()
    ]


LIST_OPENAPI: dict[str, Any] = {
    "parameters": _query_parameters(),
    "responses": {
        "422": {
            "description": "Validation Error",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
            },
        }
    },
}
