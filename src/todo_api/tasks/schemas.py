"""What a client may send about a task and what it gets back."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, ClassVar
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
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

from todo_api.schema import (
    DESCRIPTION_MAX,
    RECURRENCE_MAX,
    TAG_MAX,
    TAGS_PER_TASK,
    TIMEZONE_MAX,
    TITLE_MAX,
    unstorable_character,
)
from todo_api.tasks.recurrence import InvalidRule, parse_rule

MAX_TASK_ID = 2**63 - 1  # the largest id the database's BIGINT column holds


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
    Field(
        description="1 to 200 characters once surrounding white space is trimmed",
        examples=["Weekly review"],
    ),
]
Description = Annotated[
    str,
    StringConstraints(max_length=DESCRIPTION_MAX),
    BeforeValidator(_storable_text),
    Field(description="at most 2000 characters", examples=["Inbox zero, plan next week"]),
]


class Priority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


def _string(value: Any) -> str:
    # What strict mode does for a plain str field, for fields whose value is parsed from one.
    if not isinstance(value, str):
        raise PydanticCustomError("string_type", "Input should be a valid string")
    return value


def _priority(value: Any) -> Priority:
    try:
        return Priority(_string(value).lower())
    except ValueError:
        raise PydanticCustomError(
            "priority", "Must be 'low', 'medium' or 'high' (any letter case)"
        ) from None


PriorityName = Annotated[
    Priority,
    BeforeValidator(_priority),
    WithJsonSchema(
        {
            "type": "string",
            "enum": [priority.value for priority in Priority],
            "description": "low, medium or high, in any letter case; returned in lower case",
            "examples": ["high"],
        }
    ),
]


def _tag(value: str) -> str:
    tag = value.strip().lower()
    if not 1 <= len(tag) <= TAG_MAX:
        raise PydanticCustomError(
            "tag_length", "Each tag must be 1 to {max} characters once trimmed", {"max": TAG_MAX}
        )
    if "," in tag or any(unicodedata.category(character) == "Cc" for character in tag):
        raise PydanticCustomError(
            "tag_character", "A tag may not contain a comma or a control character"
        )
    return tag


def _tag_set(tags: list[str]) -> list[str]:
    merged = sorted(set(tags))
    if len(merged) > TAGS_PER_TASK:
        raise PydanticCustomError(
            "too_many_tags", "At most {max} different tags per task", {"max": TAGS_PER_TASK}
        )
    return merged


Tag = Annotated[str, BeforeValidator(_storable_text), AfterValidator(_tag)]
Tags = Annotated[
    list[Tag],
    AfterValidator(_tag_set),
    Field(
        description="Each trimmed and lower-cased, 1 to 50 characters, no comma or control "
        "character; duplicates merged; at most 20; returned sorted",
        examples=[["home", "planning"]],
    ),
]

# RFC 3339 date-time: the offset is required, so a moment is never ambiguous.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def parse_moment(value: Any) -> datetime:
    """An RFC 3339 date-time with an offset, as an aware datetime in UTC."""
    if not _RFC3339.fullmatch(_string(value)):
        raise PydanticCustomError(
            "date_time_with_offset",
            "Must be an RFC 3339 date-time with an offset, e.g. 2026-01-09T16:00:00Z or "
            "2026-01-09T18:00:00+02:00",
        )
    # Python reads at most microseconds: finer digits are dropped, not rounded.
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.upper())
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):
        raise PydanticCustomError(
            "date_time_range", "Not a valid date-time (or outside the years 1 to 9999 in UTC)"
        ) from None


Moment = Annotated[
    datetime,
    BeforeValidator(parse_moment),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 with an offset; returned in UTC with Z",
            "examples": ["2026-01-09T16:00:00Z"],
        }
    ),
]


def _recurrence(value: str) -> str:
    try:
        return str(parse_rule(value))
    except InvalidRule as error:
        raise PydanticCustomError(
            "recurrence", "Invalid recurrence rule: {reason}", {"reason": str(error)}
        ) from None


Recurrence = Annotated[
    str,
    StringConstraints(max_length=RECURRENCE_MAX),
    BeforeValidator(_storable_text),
    AfterValidator(_recurrence),
    Field(
        description="An RFC 5545 RRULE value: FREQ=DAILY|WEEKLY|MONTHLY|YEARLY, optional "
        "INTERVAL (1-1000), BYDAY, BYMONTHDAY, BYMONTH, WKST, and COUNT or UNTIL; a leading "
        "'RRULE:' is dropped; returned normalised. Needs a due_at.",
        examples=["FREQ=WEEKLY;BYDAY=FR"],
    ),
]


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _time_zone(value: str) -> str:
    if value not in _time_zones():
        raise PydanticCustomError(
            "time_zone", "Must be an IANA time zone name, e.g. Europe/Berlin or UTC"
        )
    return value


TimeZone = Annotated[
    str,
    StringConstraints(max_length=TIMEZONE_MAX),
    BeforeValidator(_storable_text),
    AfterValidator(_time_zone),
    Field(
        description="IANA time zone in which the recurrence is expanded",
        examples=["Europe/Berlin"],
    ),
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
OptionalPriority = Annotated[
    PriorityName | None,
    BeforeValidator(_reject_null),
    WithJsonSchema({"type": "string", "enum": [priority.value for priority in Priority]}),
]
OptionalTags = Annotated[
    Tags | None,
    BeforeValidator(_reject_null),
    WithJsonSchema({"type": "array", "items": {"type": "string"}, "maxItems": TAGS_PER_TASK}),
]
OptionalTimeZone = Annotated[
    TimeZone | None,
    BeforeValidator(_reject_null),
    WithJsonSchema({"type": "string", "maxLength": TIMEZONE_MAX, "examples": ["Europe/Berlin"]}),
]

# Fields the server owns: a client that sends back a task it read has them ignored, not refused.
READ_ONLY_FIELDS = frozenset(
    {"id", "user_id", "created_at", "updated_at", "completed_at", "version"}
)


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
    priority: PriorityName = Priority.MEDIUM
    tags: Tags = []
    due_at: Moment | None = None
    remind_at: Moment | None = None
    recurrence: Recurrence | None = None
    timezone: TimeZone = "UTC"


class TaskUpdate(_TaskInput):
    """Fields left out keep their value; `null` clears `description`, `due_at`, `remind_at`
    and `recurrence`."""

    title: OptionalTitle = None
    description: Description | None = None
    completed: OptionalCompleted = None
    priority: OptionalPriority = None
    tags: OptionalTags = None
    due_at: Moment | None = None
    remind_at: Moment | None = None
    recurrence: Recurrence | None = None
    timezone: OptionalTimeZone = None

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class CompletionUpdate(_TaskInput):
    """Sets `completed`; without it (or without a body) the state is toggled."""

    completed: OptionalCompleted = None


class TaskRead(BaseModel):
    id: int = Field(examples=[1])
    user_id: str = Field(examples=["user-123"])
    title: str = Field(examples=["Weekly review"])
    description: str | None = Field(examples=["Inbox zero, plan next week"])
    completed: bool = Field(examples=[False])
    completed_at: datetime | None = Field(
        description="When `completed` last became true; null while false", examples=[None]
    )
    priority: Priority = Field(examples=["high"])
    tags: list[str] = Field(examples=[["home", "planning"]])
    due_at: datetime | None = Field(examples=["2026-01-09T16:00:00Z"])
    remind_at: datetime | None = Field(examples=["2026-01-09T15:30:00Z"])
    recurrence: str | None = Field(examples=["FREQ=WEEKLY;BYDAY=FR"])
    timezone: str = Field(examples=["Europe/Berlin"])
    version: int = Field(description="1 on creation, +1 on every change", examples=[1])
    created_at: datetime = Field(examples=["2026-01-05T12:00:00Z"])
    updated_at: datetime = Field(examples=["2026-01-05T12:00:00Z"])


class TagCount(BaseModel):
    name: str = Field(examples=["work"])
    count: int = Field(description="How many of the caller's tasks carry it", examples=[3])


# The list's sort orders: the contract's names, each optionally prefixed "-" for descending,
# and the guide's two aliases.
SORT_KEYS = ("created_at", "updated_at", "due_at", "priority", "title")
_SORT_ALIASES = {"created": "-created_at", "due_date": "due_at"}
Q_MAX = 200
MAX_OFFSET = 2**31 - 1


def _sort(value: Any) -> str:
    order = _SORT_ALIASES.get(_string(value), value)
    if order.removeprefix("-") not in SORT_KEYS:
        raise PydanticCustomError(
            "sort",
            "Must be one of {keys}, each optionally prefixed with '-' for descending, or "
            "'created' or 'due_date'",
            {"keys": ", ".join(SORT_KEYS)},
        )
    return str(order)


def _comma_separated(values: Any) -> list[str]:
    """Repeated parameters and comma-separated lists alike: `a,b` and `x=a&x=b`."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        raise PydanticCustomError("list_type", "Input should be a list")
    items = (item.strip() for value in values for item in _string(value).split(","))
    return [item for item in items if item]


def _tag_filter(tags: list[str]) -> list[str]:
    # Held to the rules of a task's tags: one no task can carry is refused rather than matched,
    # and text no database can store never reaches one.
    merged = sorted({_tag(_storable_text(tag)) for tag in tags})
    if len(merged) > TAGS_PER_TASK:
        raise PydanticCustomError(
            "too_many_tags",
            "At most {max} different tags (no task has more)",
            {"max": TAGS_PER_TASK},
        )
    return merged


def _query_bool(value: Any) -> bool:
    if isinstance(value, bool):  # a JSON boolean, where the query comes as JSON (MCP tools)
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise PydanticCustomError("bool_parsing", "Must be 'true' or 'false'")


QueryBool = Annotated[bool, BeforeValidator(_query_bool), WithJsonSchema({"type": "boolean"})]


class TaskQuery(BaseModel):
    """Which of the caller's tasks a list holds, in which order, which page. Unknown
    parameters are ignored; every known one is validated."""

    model_config = ConfigDict(extra="ignore")

    status: TaskStatus = Field(TaskStatus.ALL, description="Completion")
    q: Annotated[
        str | None,
        StringConstraints(max_length=Q_MAX),
        BeforeValidator(_storable_text),
        Field(
            description="Every white-space-separated word occurs in the title or the "
            "description, case-insensitively (all of Unicode)",
            examples=["weekly review"],
        ),
    ] = None
    priority: Annotated[
        list[Priority],
        BeforeValidator(lambda values: [_priority(item) for item in _comma_separated(values)]),
        AfterValidator(lambda values: sorted(set(values))),
        Field(
            description="Any of these priorities: comma-separated or repeated",
            examples=[["high", "medium"]],
        ),
    ] = []
    tag: Annotated[
        list[str],
        BeforeValidator(_comma_separated),
        AfterValidator(_tag_filter),
        Field(
            description="Carries all of these tags: comma-separated or repeated",
            examples=[["work"]],
        ),
    ] = []
    due_after: Annotated[
        Moment | None, Field(description="due_at at or after this RFC 3339 date-time")
    ] = None
    due_before: Annotated[
        Moment | None, Field(description="due_at before this RFC 3339 date-time")
    ] = None
    overdue: Annotated[
        QueryBool | None,
        Field(description="true: open tasks whose due_at has passed; false: all others"),
    ] = None
    has_due: Annotated[QueryBool | None, Field(description="Has a due_at or not")] = None
    sort: Annotated[
        str,
        BeforeValidator(_sort),
        WithJsonSchema(
            {
                "type": "string",
                "enum": [*SORT_KEYS, *(f"-{key}" for key in SORT_KEYS), *_SORT_ALIASES],
                "default": "-created_at",
            }
        ),
        Field(description="Order; ties by id, newest first"),
    ] = "-created_at"
    limit: int = Field(100, ge=1, le=1000, description="Page size")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Tasks to skip")

    def only_status(self) -> bool:
        """Whether nothing but `status` (and the page) narrows or orders the list."""
        return self.model_fields_set <= {"status", "limit", "offset"} or (
            self.sort == "-created_at"
            and not (self.q or self.priority or self.tag)
            and self.due_after is None
            and self.due_before is None
            and self.overdue is None
            and self.has_due is None
        )
