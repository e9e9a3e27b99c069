"""One live stream: the feed from the stream's own cursor, read again whenever it is woken."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

from todo_api.live.hub import Subscription
from todo_api.tasks.feed import ChangeFeed, FeedEntry, FeedPage

STREAM_PAGE = 100


async def follow(
    feed: ChangeFeed, subscription: Subscription, first: FeedPage, *, ends_at: float
) -> AsyncIterator[FeedEntry]:
    """The entries of `first`, then each later one soon after its commit, until the Unix time
    `ends_at` (when the caller's token expires). Nothing is queued here: a wake-up only makes
    the stream read the feed after the last entry it sent, so none is skipped or sent twice."""
    page = first
    try:
        while True:
            for entry in page.entries:
                yield entry
            if not page.has_more:
                try:
                    async with asyncio.timeout(_seconds_until(ends_at)):
                        await subscription.woken.wait()
                except TimeoutError:
                    return
                # Cleared before reading: a wake-up during the read makes the next one.
                subscription.woken.clear()
            page = await feed.read(page.cursor, limit=STREAM_PAGE)
    finally:
        subscription.close()


def _seconds_until(moment: float) -> float | None:
    return None if math.isinf(moment) else moment - time.time()
