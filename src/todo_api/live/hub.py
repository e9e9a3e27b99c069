"""The open streams of one process, by user, and how they are woken.

A stream holds no changes, only a flag: a wake-up means "your user's feed may have moved", and
the stream reads the feed from its own cursor. So a stream's memory stays the same however many
changes happen, and a wake-up that is lost or doubled costs a read, never a change.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable


class TooManyStreams(Exception):
    """The user already has as many open streams as allowed (a 429)."""


class Subscription:
    """One open stream's place in the hub: `woken` is set when the user's feed may have moved."""

    def __init__(self, hub: StreamHub, user_id: str) -> None:
        self.user_id = user_id
        self.woken = asyncio.Event()
        self._hub = hub

    def close(self) -> None:
        self._hub.remove(self)


class StreamHub:
    """Open streams by user. A stream that ends without closing its subscription (its response
    never started, say) leaves when it is garbage-collected: the sets hold it weakly."""

    def __init__(self, *, per_user: int) -> None:
        self._per_user = per_user
        self._streams: dict[str, weakref.WeakSet[Subscription]] = {}

    def subscribe(self, user_id: str) -> Subscription:
        streams = self._streams.setdefault(user_id, weakref.WeakSet())
        if len(streams) >= self._per_user:
            raise TooManyStreams
        subscription = Subscription(self, user_id)
        streams.add(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        streams = self._streams.get(subscription.user_id)
        if streams is not None:
            streams.discard(subscription)
            if not streams:
                del self._streams[subscription.user_id]

    def users(self) -> list[str]:
        """The users with open streams in this process."""
        return [user for user, streams in self._streams.items() if streams]

    def wake(self, users: Iterable[str]) -> None:
        for user in users:
            for subscription in self._streams.get(user, ()):
                subscription.woken.set()

    def wake_all(self) -> None:
        """After wake-ups may have been missed (the listening connection was lost)."""
        self.wake(list(self._streams))
