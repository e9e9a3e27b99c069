"""The change feed: a user's changes after a cursor, in commit order, each once.

The database numbers every change of a user's tasks (triggers, migration 0004) so that the
numbers follow the commit order; docs/sync.md says why that makes this read never skip and
never repeat. A cursor is a position in those numbers, signed with the user's own key, so a
cursor that was not handed out (forged, another user's, from before a database reset) is
refused like one that is too old.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter
from sqlalchemy import (
    BindParameter,
    Select,
    and_,
    bindparam,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)

from todo_api.database import Record, StatementRunner
from todo_api.schema import FEED_CHANGE, FEED_REMINDER, task_counts, task_feed, tasks
from todo_api.tasks.repository import OWNED_COUNTERS, OWNED_FEED
from todo_api.tasks.rows import PUBLIC_COLUMNS, task_from_row
from todo_api.tasks.schemas import TaskRead

PAGE_MAX = 1000

# A position past every change there can be: the first page of a snapshot skips whatever a
# fresh copy does not need, at any number.
_EVERYTHING = 2**62


class CursorGone(Exception):
    """The cursor is malformed, unknown or too old: the client must start over (a 410)."""

    detail = (
        "The cursor is unknown or has expired; read the feed again without `since` "
        "and replace the local copy with what it returns"
    )


class UpsertItem(BaseModel):
    op: Literal["upsert"] = "upsert"
    task: TaskRead


class DeleteItem(BaseModel):
    op: Literal["delete"] = "delete"
    id: int


class ReminderItem(BaseModel):
    op: Literal["reminder"] = "reminder"
    task: TaskRead


FeedItem = Annotated[UpsertItem | DeleteItem | ReminderItem, Field(discriminator="op")]
feed_item_json = TypeAdapter(FeedItem)


class ChangesPage(BaseModel):
    changes: list[FeedItem]
    cursor: str = Field(description="Opaque; pass it as `since` to continue after this page")
    has_more: bool = Field(description="More changes wait: call again at once with `cursor`")


@dataclass(frozen=True, slots=True)
class FeedEntry:
    item: UpsertItem | DeleteItem | ReminderItem
    cursor: str  # the position right after this entry

    @property
    def kind(self) -> str:
        return FEED_REMINDER if self.item.op == FEED_REMINDER else FEED_CHANGE


@dataclass(frozen=True, slots=True)
class FeedPage:
    entries: list[FeedEntry]
    cursor: str
    has_more: bool

    def as_response(self) -> ChangesPage:
        items = [entry.item for entry in self.entries]
        return ChangesPage(changes=items, cursor=self.cursor, has_more=self.has_more)


@dataclass(frozen=True, slots=True)
class _Position:
    """After change number `seq`. Entries numbered up to `horizon` are those a snapshot (a read
    without `since`) already covered: from them only live tasks are wanted, no tombstones or
    past reminders, since the client never held what they refer to."""

    seq: int
    horizon: int = 0


_START = _Position(0)
_MAC_BYTES = 10
_UNSIGNED = bytes(_MAC_BYTES)
_CURSOR_LAYOUT = struct.Struct(">QQ")


def _mac(key: str, user_id: str, position: _Position) -> bytes:
    message = f"{user_id}\x00{position.seq}\x00{position.horizon}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).digest()[:_MAC_BYTES]


def _encode(position: _Position, key: str | None, user_id: str) -> str:
    # The start needs no key (a user without changes has none): reading everything from the
    # beginning is never wrong.
    mac = _UNSIGNED if position == _START else _mac(key or "", user_id, position)
    raw = _CURSOR_LAYOUT.pack(position.seq, position.horizon) + mac
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(cursor: str) -> tuple[_Position, bytes]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, UnicodeEncodeError):
        raise CursorGone from None
    if len(raw) != _CURSOR_LAYOUT.size + _MAC_BYTES:
        raise CursorGone
    seq, horizon = _CURSOR_LAYOUT.unpack(raw[: _CURSOR_LAYOUT.size])
    return _Position(seq, horizon), raw[_CURSOR_LAYOUT.size :]


_AFTER: BindParameter[int] = bindparam("after", type_=task_feed.c.seq.type)
_HORIZON: BindParameter[int] = bindparam("horizon", type_=task_feed.c.seq.type)


def _read_statement() -> Select[Any]:
    """The user's feed state (newest number, newest pruned number, key) and a page of entries
    after a position, each with its task as it is now, in one statement: so on PostgreSQL the
    newest number and the page come from one snapshot."""
    state = (
        select(
            task_counts.c.change_seq.label("head"),
            task_counts.c.pruned_seq,
            task_counts.c.feed_key,
        )
        .where(OWNED_COUNTERS)
        .subquery("state")
    )
    wanted = or_(
        task_feed.c.seq > _HORIZON,
        and_(task_feed.c.kind == FEED_CHANGE, not_(task_feed.c.deleted)),
    )
    page = (
        select(
            task_feed.c.seq.label("feed_seq"),
            task_feed.c.kind.label("feed_kind"),
            task_feed.c.deleted.label("feed_deleted"),
            task_feed.c.task_id.label("feed_task_id"),
            *PUBLIC_COLUMNS,
        )
        .select_from(
            task_feed.outerjoin(
                tasks,
                and_(tasks.c.id == task_feed.c.task_id, tasks.c.user_id == task_feed.c.user_id),
            )
        )
        .where(OWNED_FEED, task_feed.c.seq > _AFTER, wanted)
        .order_by(task_feed.c.seq)
        .limit(bindparam("limit", type_=task_feed.c.seq.type))
        .subquery("page")
    )
    # One row even for a user without state or changes, so the state always comes back.
    one = select(literal(1).label("one")).subquery("one")
    return (
        select(
            func.coalesce(state.c.head, 0).label("head"),
            func.coalesce(state.c.pruned_seq, 0).label("pruned_seq"),
            state.c.feed_key,
            *page.c,
        )
        .select_from(one.outerjoin(state, true()).outerjoin(page, true()))
        .order_by(page.c.feed_seq)
    )


_READ = _read_statement()


class ChangeFeed:
    """One user's change feed."""

    def __init__(self, runner: StatementRunner, user_id: str) -> None:
        self._runner = runner
        self._user_id = user_id

    async def read(self, since: str | None, *, limit: int) -> FeedPage:
        """The entries after `since` (without it: every live task, as upserts), at most
        `limit`; raises CursorGone for a cursor that cannot be continued."""
        if since is None:
            position, mac = _START, None
        else:
            position, mac = _decode(since)
        after, horizon = position.seq, position.horizon
        params = {
            "owner": self._user_id,
            "after": after,
            "horizon": _EVERYTHING if since is None else horizon,
            "limit": limit + 1,
        }
        rows = await self._runner.fetch_all(_READ, params)
        state = rows[0]
        head, key = state["head"], state["feed_key"]
        if mac is not None:
            self._check(position, mac, key, head=head, pruned=state["pruned_seq"])
        if since is None:
            horizon = head
        found = [row for row in rows if row["feed_seq"] is not None]
        has_more = len(found) > limit
        entries = [self._entry(row, horizon, key) for row in found[:limit]]
        # With nothing more to read, every change up to `head` has been read or is not wanted.
        end = entries[-1].cursor if has_more else self._cursor(_Position(head), key)
        return FeedPage(entries, end, has_more)

    async def head(self) -> str:
        """A cursor after the newest change: what a live stream opened now starts from."""
        params = {"owner": self._user_id, "after": 0, "horizon": 0, "limit": 0}
        state = (await self._runner.fetch_all(_READ, params))[0]
        return self._cursor(_Position(state["head"]), state["feed_key"])

    def _check(
        self, position: _Position, mac: bytes, key: str | None, *, head: int, pruned: int
    ) -> None:
        if position == _START:
            if mac != _UNSIGNED:
                raise CursorGone
        elif key is None or not hmac.compare_digest(mac, _mac(key, self._user_id, position)):
            raise CursorGone
        if position.seq > head or position.horizon > head:
            raise CursorGone
        # Forgotten tombstones below the horizon would have been skipped anyway.
        if max(position.seq, position.horizon) < pruned:
            raise CursorGone

    def _entry(self, row: Record, horizon: int, key: str | None) -> FeedEntry:
        item: UpsertItem | DeleteItem | ReminderItem
        if row["feed_deleted"]:
            item = DeleteItem(id=row["feed_task_id"])
        elif row["feed_kind"] == FEED_REMINDER:
            item = ReminderItem(task=TaskRead.model_validate(task_from_row(row)))
        else:
            item = UpsertItem(task=TaskRead.model_validate(task_from_row(row)))
        seq = row["feed_seq"]
        # Past the horizon, it no longer matters.
        position = _Position(seq, horizon if seq < horizon else 0)
        return FeedEntry(item, self._cursor(position, key))

    def _cursor(self, position: _Position, key: str | None) -> str:
        return _encode(position, key, self._user_id)
