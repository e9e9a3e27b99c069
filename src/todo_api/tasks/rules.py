"""Rules that span several fields of a task, checked on the task as it will be stored."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from todo_api.tasks.recurrence import PERIOD_BUDGET, first_occurrence, parse_rule


class InvalidTask(ValueError):
    """A write that would leave the task invalid: `field` names the field to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def check_schedule(
    due_at: datetime | None, recurrence: str | None, timezone: str, *, blame: str
) -> None:
    """A recurring task needs a due date, and its rule must occur from that date on.
    `blame` is the field a missing due date is reported on (the one the client changed)."""
    if recurrence is None:
        return
    if due_at is None:
        raise InvalidTask(blame, "A recurring task needs a due_at")
    if first_occurrence(parse_rule(recurrence), due_at, ZoneInfo(timezone)) is None:
        days, weeks, months, years = PERIOD_BUDGET.values()
        raise InvalidTask(
            "recurrence",
            "The rule never occurs from due_at on, or too rarely to expand: an occurrence "
            f"must come within {days} days, {weeks} weeks, {months} months or {years} years "
            "(by FREQ, times INTERVAL)",
        )
