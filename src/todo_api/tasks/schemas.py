"""What a client may send about a task and what it gets back."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from todo_api.schema import DESCRIPTION_MAX, TITLE_MAX, unstorable_character


def _storable_text(value: Any) -> Any:
    # Text a database column cannot hold is refused before any other check of a string, so it is
    # a 422 on every database, with a message that names the character.
    if isinstance(value, str) and (character := unstorable_character(value)) is not None:
        if character == "\x00":
            raise PydanticCustomError("nul_character", "May not contain NUL (\\u0000) characters")
        raise PydanticCustomError(
            "surrogate_character",
            "May not contain an unpaired surrogate ({character}): UTF-8 cannot encode it",
            {"character": f"\\u{ord(character):04x}"},
        )
    return value


Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX),
    BeforeValidator(_storable_text),
    Field(description="1 to 200 characters once surrounding white space is trimmed"),
]
Description = Annotated[
    str,
    StringConstraints(max_length=DESCRIPTION_MAX),
    BeforeValidator(_storable_text),
    Field(description="at most 2000 characters"),
]


def _reject_null(value: Any) -> Any:
    if value is None:
        raise PydanticCustomError(
            "null_not_allowed", "May not be null; leave the field out instead"
        )
    return value


# Optional in a body, but not nullable: the schema shows only the non-null type.
OptionalTitle = Annotated[
    Title | None,
    BeforeValidator(_reject_null),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": TITLE_MAX}),
]
OptionalCompleted = Annotated[
    StrictBool | None, BeforeValidator(_reject_null), WithJsonSchema({"type": "boolean"})
]

# Fields the server owns: a client that sends back a task it read has them ignored, not refused.
READ_ONLY_FIELDS = frozenset({"id", "user_id", "created_at", "updated_at"})


class TaskStatus(StrEnum):
    ALL = "all"
    PENDING = "pending"
    COMPLETED = "completed"


class _TaskInput(BaseModel):
    """A request body: strict JSON types, server-owned fields dropped, unknown fields refused."""

    model_config = ConfigDict(strict=True, extra="forbid")
    ignored_fields: ClassVar[frozenset[str]] = READ_ONLY_FIELDS

    @model_validator(mode="before")
    @classmethod
    def _drop_server_owned(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if key not in cls.ignored_fields}
        return data


class TaskCreate(_TaskInput):
    # `completed` is false on creation whatever the client sends.
    ignored_fields = READ_ONLY_FIELDS | {"completed"}

    title: Title
    description: Description | None = None


class TaskUpdate(_TaskInput):
    """Fields left out keep their value; `"description": null` clears the description."""

    title: OptionalTitle = None
    description: Description | None = None
    completed: OptionalCompleted = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(include=self.model_fields_set)


class CompletionUpdate(_TaskInput):
    """Sets `completed`; without it (or without a body) the state is toggled."""

    completed: OptionalCompleted = None


class TaskRead(BaseModel):
    id: int
    user_id: str
    title: str
    description: str | None
    completed: bool
    created_at: datetime
    updated_at: datetime
