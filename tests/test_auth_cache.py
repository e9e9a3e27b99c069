"""The verified-token cache: bounded, least recently used out first, nothing past its expiry."""

from __future__ import annotations

from todo_api.auth.cache import VerifiedTokenCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bounded_and_least_recently_used_goes_first() -> None:
    cache: VerifiedTokenCache[str] = VerifiedTokenCache(2, clock=Clock())
    cache.put("a", "alice", valid_until=2000)
    cache.put("b", "bob", valid_until=2000)
    assert cache.get("a") == "alice"  # now "b" is the least recently used
    cache.put("c", "carol", valid_until=2000)
    assert len(cache) == 2
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == ("alice", "carol")


def test_entries_end_with_the_token() -> None:
    clock = Clock()
    cache: VerifiedTokenCache[str] = VerifiedTokenCache(10, clock=clock)
    cache.put("a", "alice", valid_until=1010)
    clock.now = 1009.9
    assert cache.get("a") == "alice"
    clock.now = 1010
    assert cache.get("a") is None
    assert len(cache) == 0


def test_size_zero_turns_it_off() -> None:
    cache: VerifiedTokenCache[str] = VerifiedTokenCache(0)
    cache.put("a", "alice", valid_until=float("inf"))
    assert cache.get("a") is None
