"""Request budgets: how many requests a caller may make per window, counted in this process or
in Redis, where every process and replica shares them.

The strategy is the `limits` library's moving window: at most `amount` requests in any span of
`window` seconds, exactly (a fixed window lets up to twice the budget through around a window
boundary; a sliding-window counter only approximates). It keeps one timestamp per counted
request, so a budget of 600 costs a busy caller a list of 600 numbers.

Counting must never take the service down with it: while Redis is unreachable every request is
let through uncounted (fail open), the log says so once, and a background probe notices when it
is back; requests meanwhile never wait on it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from contextlib import suppress
from contextvars import Context
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from todo_api.settings import Settings

logger = logging.getLogger("todo_api.rate_limits")

REDIS_TIMEOUT_SECONDS = 0.5
"""Longest a request waits on Redis (connecting, or for an answer) before it is let through."""

REDIS_PROBE_INTERVAL_SECONDS = 1.0
"""How often an unreachable Redis is tried again, by a background probe, not by requests."""


@dataclass(frozen=True, slots=True)
class Budget:
    """A caller's budget right after one request was counted against it (or refused)."""

    allowed: bool
    quota: int
    window_seconds: int
    remaining: int
    reset_seconds: int
    """Seconds until the oldest request counted leaves the window and a request is freed."""


class RateLimiter:
    """Counts requests against per-caller budgets of `item` (say 600 per minute)."""

    def __init__(
        self,
        item: RateLimitItem,
        storage: Storage,
        *,
        pool: ConnectionPool | None = None,
    ) -> None:
        self.item = item
        self._storage = storage
        self._strategy = MovingWindowRateLimiter(storage)
        self._pool = pool
        self._available = True
        self._probe: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter | None:
        """The limiter `RATE_LIMIT` and `REDIS_URL` describe; None when limiting is off."""
        item = settings.rate_limit_item
        if item is None:
            return None
        if settings.redis_url is None:
            return cls(item, MemoryStorage())
        # Short timeouts and no retries: a Redis that does not answer at once is treated as
        # down, and the request goes ahead uncounted instead of waiting.
        pool = ConnectionPool.from_url(
            settings.redis_url,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
        options: dict[str, Any] = {"connection_pool": pool}
        storage = RedisStorage(
            _limits_uri(settings.redis_url),
            implementation="redispy",
            wrap_exceptions=True,
            key_prefix=settings.redis_key_prefix,
            **options,
        )
        return cls(item, storage, pool=pool)

    async def hit(self, kind: str, name: str) -> Budget | None:
        """Count one request of the caller `name` (of `kind`: "user", "address") and say how
        its budget stands; None when it cannot be counted now (storage unreachable)."""
        if not self._available:
            return None
        try:
            allowed = await self._strategy.hit(self.item, kind, name)
            reset_at, remaining = await self._strategy.get_window_stats(self.item, kind, name)
        except StorageError as error:
            self._became_unavailable(error)
            return None
        return Budget(
            allowed=allowed,
            quota=self.item.amount,
            window_seconds=self.item.get_expiry(),
            remaining=max(remaining, 0),
            reset_seconds=max(math.ceil(reset_at - time.time()), 0),
        )

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with suppress(asyncio.CancelledError):
                await self._probe
        if self._pool is not None:
            await self._pool.aclose()

    def _became_unavailable(self, error: StorageError) -> None:
        if not self._available:  # another request in flight found out first
            return
        self._available = False
        logger.warning(
            "Redis is unreachable (%s); requests are served without rate limits until it "
            "answers again",
            error.storage_error,
        )
        # In a context of its own: the probe is no part of the request that happened to fail,
        # whose id would otherwise tag the probe's log line.
        self._probe = asyncio.create_task(self._wait_until_available(), context=Context())

    async def _wait_until_available(self) -> None:
        while True:
            await asyncio.sleep(REDIS_PROBE_INTERVAL_SECONDS)
            if await self._storage.check():
                break
        self._available = True
        logger.warning("Redis answers again; rate limits are enforced")


def _limits_uri(redis_url: str) -> str:
    """The `limits` storage URI naming the same server as a redis://, rediss:// or unix:// URL
    (the connection itself comes from the pool made from `redis_url`)."""
    scheme, rest = redis_url.split("://", 1)
    return f"async+{'redis+unix' if scheme == 'unix' else scheme}://{rest}"
