"""Tokens already verified, so a client repeating its token skips the signature check."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class VerifiedTokenCache(Generic[T]):
    """A bounded LRU map from a token string to what it proved, kept until the token expires.

    Keyed by the whole token: a different signature or claim is a different key, so an entry
    can only be hit by the exact bytes that were verified.
    """

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.time) -> None:
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[T, float]] = OrderedDict()

    def get(self, token: str) -> T | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        value, valid_until = entry
        if self._clock() >= valid_until:
            self._entries.pop(token, None)
            return None
        self._entries.move_to_end(token)
        return value

    def put(self, token: str, value: T, *, valid_until: float) -> None:
        if self._max_entries <= 0:
            return
        self._entries[token] = (value, valid_until)
        self._entries.move_to_end(token)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
