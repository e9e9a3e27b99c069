"""Recurrence rules: the RFC 5545 RRULE subset tasks accept, and when the next occurrence is due.

Rules are parsed here (to refuse what the service does not support with a precise message, and
to print them in one normal form) and expanded by python-dateutil's `rrule`, in the task's time
zone (zoneinfo), so a weekly 09:00 task stays at 09:00 local time across daylight-saving changes
and "monthly" means calendar months.

How a series moves on: the next occurrence of a task is the rule's first occurrence strictly
after the task's `due_at`, expanding the rule from that `due_at`. Every occurrence the service
creates is on the rule, so expanding from it yields the same occurrences as expanding from the
series' first task, without walking the series from its start. `COUNT` counts tasks: the first
task of a series is occurrence 1 (RFC 5545 counts DTSTART as the first instance) and each next
occurrence carries its number, so a series ends after `COUNT` tasks.

Expansion cost: dateutil walks the rule's periods (days, weeks, months or years) one at a time
and, for a rule that matches nothing, stops only at the year 9999. Every expansion here is
bounded instead: the dates are moved, by a shift of years that keeps the calendar (weekdays and
leap years) identical, so close to the year 9999 that dateutil runs out of calendar soon after
the rule's budget of periods (`PERIOD_BUDGET`, weighed by what a period costs to expand). A rule
whose next occurrence lies further away than that (one that can never occur, or almost never) is
refused when it is set.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, date, datetime, time
from typing import Literal
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from dateutil.rrule import DAILY, MONTHLY, WEEKLY, YEARLY, rrule, weekday

MAX_INTERVAL = 1000
MAX_COUNT = 2**31 - 1

Frequency = Literal[0, 1, 2, 3]  # dateutil's YEARLY, MONTHLY, WEEKLY, DAILY
_FREQUENCIES: dict[str, Frequency] = {
    "DAILY": DAILY,
    "WEEKLY": WEEKLY,
    "MONTHLY": MONTHLY,
    "YEARLY": YEARLY,
}
_PERIOD = {
    DAILY: relativedelta(days=1),
    WEEKLY: relativedelta(weeks=1),
    MONTHLY: relativedelta(months=1),
    YEARLY: relativedelta(years=1),
}
PERIOD_BUDGET = {DAILY: 1000, WEEKLY: 520, MONTHLY: 240, YEARLY: 60}
"""The most periods (times INTERVAL) a rule may need to reach its next occurrence: about 3, 10,
20 and 60 years, each a few milliseconds of expansion."""
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_BYDAY = re.compile(r"([+-]?)(\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)")
_UNTIL = re.compile(r"(\d{8})(?:T(\d{6})(Z?))?")
_KNOWN_PARTS = ("FREQ", "INTERVAL", "COUNT", "UNTIL", "BYMONTH", "BYMONTHDAY", "BYDAY", "WKST")


class InvalidRule(ValueError):
    """A recurrence the service refuses; the message says why, for the client."""


@dataclass(frozen=True)
class Rule:
    freq: str
    interval: int = 1
    count: int | None = None
    until: str | None = None  # as written, normalised: YYYYMMDD, YYYYMMDDTHHMMSS[Z]
    bymonth: tuple[int, ...] = ()
    bymonthday: tuple[int, ...] = ()
    byday: tuple[tuple[int, int], ...] = ()  # (ordinal or 0, weekday 0=MO..6=SU)
    wkst: int | None = None

    def __str__(self) -> str:
        parts = [f"FREQ={self.freq}"]
        if self.interval != 1:
            parts.append(f"INTERVAL={self.interval}")
        if self.count is not None:
            parts.append(f"COUNT={self.count}")
        if self.until is not None:
            parts.append(f"UNTIL={self.until}")
        if self.bymonth:
            parts.append("BYMONTH=" + ",".join(map(str, self.bymonth)))
        if self.bymonthday:
            parts.append("BYMONTHDAY=" + ",".join(map(str, self.bymonthday)))
        if self.byday:
            days = (f"{n or ''}{_WEEKDAYS[day]}" for n, day in self.byday)
            parts.append("BYDAY=" + ",".join(days))
        if self.wkst is not None:
            parts.append(f"WKST={_WEEKDAYS[self.wkst]}")
        return ";".join(parts)


def parse_rule(text: str) -> Rule:
    """The rule `text` (an RRULE value, a leading "RRULE:" tolerated), or InvalidRule."""
    body = text.strip()
    if body[:6].upper() == "RRULE:":
        body = body[6:]
    parts: dict[str, str] = {}
    for part in body.split(";"):
        name, equals, value = part.partition("=")
        name = name.strip().upper()
        if not equals or not value.strip():
            raise InvalidRule(f"'{part}' is not NAME=VALUE")
        if name not in _KNOWN_PARTS:
            raise InvalidRule(f"{name} is not supported; use {', '.join(_KNOWN_PARTS)}")
        if name in parts:
            raise InvalidRule(f"{name} is given twice")
        parts[name] = value.strip().upper()
    if "FREQ" not in parts:
        raise InvalidRule("FREQ is required")
    if parts["FREQ"] not in _FREQUENCIES:
        raise InvalidRule(f"FREQ must be one of {', '.join(_FREQUENCIES)}")
    if "COUNT" in parts and "UNTIL" in parts:
        raise InvalidRule("COUNT and UNTIL may not both be given")
    freq = parts["FREQ"]
    byday = _weekdays(parts.get("BYDAY"), ordinals=freq in ("MONTHLY", "YEARLY"))
    if "BYMONTHDAY" in parts and freq == "WEEKLY":
        raise InvalidRule("BYMONTHDAY cannot be used with FREQ=WEEKLY (RFC 5545)")
    wkst = _weekdays(parts.get("WKST"), ordinals=False)
    if len(wkst) > 1:
        raise InvalidRule("WKST must be one weekday")
    rule = Rule(
        freq=freq,
        interval=_number(parts, "INTERVAL", 1, MAX_INTERVAL) or 1,
        count=_number(parts, "COUNT", 1, MAX_COUNT),
        until=_until(parts.get("UNTIL")),
        bymonth=_numbers(parts, "BYMONTH", 1, 12),
        bymonthday=_numbers(parts, "BYMONTHDAY", 1, 31, negative=True),
        byday=byday,
        wkst=wkst[0][1] if wkst else None,
    )
    _require_possible_month_days(rule)
    return rule


def first_occurrence(rule: Rule, start: datetime, zone: ZoneInfo) -> datetime | None:
    """The rule's first occurrence at or after `start` (aware), expanded from it, or None when
    there is none within the budget: a rule that can never occur for this start."""
    return _occurrence(rule, start, zone, inclusive=True)


def next_occurrence(
    rule: Rule, due_at: datetime, zone: ZoneInfo, occurrence: int
) -> datetime | None:
    """When the occurrence after this one (number `occurrence`, due at `due_at`) is due, or
    None when the series ends here (COUNT reached, UNTIL passed, or nothing within budget)."""
    if rule.count is not None and occurrence >= rule.count:
        return None
    return _occurrence(rule, due_at, zone, inclusive=False)


def _occurrence(rule: Rule, start: datetime, zone: ZoneInfo, *, inclusive: bool) -> datetime | None:
    local = start.astimezone(zone).replace(tzinfo=None, microsecond=0)
    try:
        frequency = _FREQUENCIES[rule.freq]
        horizon = local + _PERIOD[frequency] * (rule.interval * PERIOD_BUDGET[frequency])
    except (OverflowError, ValueError):  # past the year 9999: dateutil stops there by itself
        horizon = datetime.max
    shift = _calendar_twin_shift(local.year, horizon.year)
    until = _local_until(rule.until, zone)
    if until is not None and shift:
        until = _shift(until, shift) if until.year + shift <= MAXYEAR else None
    expansion = rrule(
        _FREQUENCIES[rule.freq],
        dtstart=_shift(local, shift),
        interval=rule.interval,
        until=until,
        bymonth=rule.bymonth or None,
        bymonthday=rule.bymonthday or None,
        byweekday=[weekday(day, n or None) for n, day in rule.byday] or None,
        wkst=rule.wkst,
        cache=False,
    )
    found = expansion.after(_shift(local, shift), inc=inclusive)
    if found is None:
        return None
    found = _shift(found, -shift)
    if found > horizon:
        return None
    return found.replace(tzinfo=zone).astimezone(start.tzinfo)


def _calendar_twin_shift(first_year: int, last_year: int) -> int:
    """A number of years to add to every date from `first_year` to `last_year` so that the
    shifted years end just before dateutil's last year, with the same calendar (each year
    starts on the same weekday and is a leap year exactly when its original is). A multiple
    of 400 years always qualifies (the Gregorian cycle), so one is found within 400 years of
    the end."""
    top = MAXYEAR - 1 - last_year
    if top <= 0:
        return 0
    for shift in range(top, max(top - 400, 0) - 1, -1):
        if _same_calendar(first_year, last_year, shift):
            return shift
    return 0


def _same_calendar(first_year: int, last_year: int, shift: int) -> bool:
    if date(first_year, 1, 1).weekday() != date(first_year + shift, 1, 1).weekday():
        return False
    if last_year - first_year < 8:
        years: range | set[int] = range(first_year, last_year + 1)
    elif shift % 4:
        return False
    else:
        # Years a multiple of 4 apart agree on leap years except where a century is involved.
        centuries = range(first_year - first_year % 100, last_year + shift + 1, 100)
        years = {y for y in centuries if first_year <= y <= last_year} | {
            y - shift for y in centuries if first_year <= y - shift <= last_year
        }
    return all(calendar.isleap(year) == calendar.isleap(year + shift) for year in years)


def _shift(moment: datetime, years: int) -> datetime:
    return moment.replace(year=moment.year + years) if years else moment


def _local_until(until: str | None, zone: ZoneInfo) -> datetime | None:
    """UNTIL as a local wall time: a UTC time converted, a floating time as it is, a date as the
    end of that day."""
    if until is None:
        return None
    day = datetime.strptime(until[:8], "%Y%m%d")
    if len(until) == 8:
        return datetime.combine(day, time(23, 59, 59))
    moment = datetime.strptime(until[:15], "%Y%m%dT%H%M%S")
    if until.endswith("Z"):
        utc = moment.replace(tzinfo=UTC)
        try:
            return utc.astimezone(zone).replace(tzinfo=None)
        except OverflowError:
            return moment
    return moment


def _number(parts: dict[str, str], name: str, low: int, high: int) -> int | None:
    value = parts.get(name)
    if value is None:
        return None
    if not value.isdigit() or not low <= int(value) <= high:
        raise InvalidRule(f"{name} must be a whole number from {low} to {high}")
    return int(value)


def _numbers(
    parts: dict[str, str], name: str, low: int, high: int, *, negative: bool = False
) -> tuple[int, ...]:
    value = parts.get(name)
    if value is None:
        return ()
    numbers = set()
    for item in value.split(","):
        digits = item[1:] if negative and item[:1] in "+-" else item
        if not digits.isdigit() or not low <= int(digits) <= high:
            allowed = f"{low} to {high}" + (f" or -{high} to -{low}" if negative else "")
            raise InvalidRule(f"{name} values must be whole numbers from {allowed}")
        numbers.add(int(item))
    return tuple(sorted(numbers))


def _weekdays(value: str | None, *, ordinals: bool) -> tuple[tuple[int, int], ...]:
    if value is None:
        return ()
    days = set()
    for item in value.split(","):
        match = _BYDAY.fullmatch(item.strip())
        if match is None:
            raise InvalidRule(f"'{item}' is not a weekday (MO, TU, WE, TH, FR, SA, SU)")
        sign, number, name = match.groups()
        n = int(number) if number else 0
        if number and (not ordinals or not 1 <= n <= 53):
            raise InvalidRule(
                "a numbered weekday (e.g. 1MO, -1FR) needs FREQ=MONTHLY or YEARLY and a number "
                "from 1 to 53"
            )
        days.add((-n if sign == "-" else n, _WEEKDAYS.index(name)))
    return tuple(sorted(days, key=lambda day: (day[1], day[0])))


def _until(value: str | None) -> str | None:
    if value is None:
        return None
    match = _UNTIL.fullmatch(value)
    if match is None:
        raise InvalidRule("UNTIL must be a date (20261231) or date-time (20261231T170000Z)")
    day, moment, _utc = match.groups()
    try:
        datetime.strptime(day + (moment or ""), "%Y%m%d%H%M%S" if moment else "%Y%m%d")
    except ValueError:
        raise InvalidRule("UNTIL is not a valid date") from None
    return value


def _require_possible_month_days(rule: Rule) -> None:
    """BYMONTH and BYMONTHDAY that never meet (February 30th) are refused up front, with a
    clearer message than "no occurrence"."""
    if not rule.bymonthday:
        return
    months = rule.bymonth or tuple(range(1, 13))
    longest = max(calendar.monthrange(2024, month)[1] for month in months)  # a leap year
    if all(abs(day) > longest for day in rule.bymonthday):
        raise InvalidRule("BYMONTHDAY never falls in BYMONTH: the rule can never occur")
