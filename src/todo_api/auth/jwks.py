"""The issuer's public signing keys (its JWKS), fetched without blocking and kept in memory.

- Keys are fetched once and reused. A key id (`kid`) that is not known yet triggers a refetch,
  at most once per `refetch_interval` however many requests carry it, so a key rotation is
  picked up without a restart and a flood of made-up key ids cannot flood the issuer.
- Concurrent requests share one fetch (single flight); a fetch has an overall timeout.
- A set older than `max_age` is refreshed in the background while its keys keep serving, so a
  key the issuer withdrew stops being accepted in time.
- A failed fetch keeps the keys fetched before: tokens signed with them keep working while the
  issuer is down. Only a token whose key cannot be had gets KeysUnavailableError (a 503).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from jwt import PyJWK

from todo_api import __version__
from todo_api.auth.errors import AuthError, KeysUnavailableError

# httpx is imported where a JWKS is first fetched: a service verifying HS256 tokens only never
# loads it (5 MB less in every worker).
if TYPE_CHECKING:
    import httpx

logger = logging.getLogger("todo_api.auth")

# Which keys may verify which algorithm: key type (kty) and, for curves, the curve (crv).
KEY_SHAPES: dict[str, tuple[str, frozenset[str] | None]] = {
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
}
ASYMMETRIC_ALGORITHMS = tuple(KEY_SHAPES)

KEYS_UNAVAILABLE = (
    "Cannot verify the token now: the issuer's signing keys (JWKS) could not be fetched; "
    "retry shortly"
)


class JwksKeySource:
    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 5.0,
        refetch_interval_seconds: float = 10.0,
        max_age_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._timeout = timeout_seconds
        self._refetch_interval = refetch_interval_seconds
        self._max_age = max_age_seconds
        self._clock = clock
        self._keys: dict[str, _Key] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch started, successful or not
        self._failure: str | None = None  # why the last fetch failed; None when it worked
        self._fetch: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    async def key_for(self, kid: str, algorithm: str) -> Any:
        """The public key to check a token signed with `algorithm` under `kid`.

        Raises AuthError when the issuer does not know `kid` or the key does not fit the
        algorithm, KeysUnavailableError when the JWKS cannot be fetched to find out.
        """
        key = self._keys.get(kid)
        if key is None:
            if self._fetch_running() or self._may_fetch():
                await self._refresh()
                key = self._keys.get(kid)
            if key is None:
                if self._failure is not None:
                    raise KeysUnavailableError(
                        KEYS_UNAVAILABLE, retry_after_seconds=self._retry_after()
                    )
                raise AuthError(f"Token key id (kid) {_shown(kid)} is not in the issuer's JWKS")
        elif self._is_stale() and self._may_fetch():
            self._start_fetch()  # the cached key serves this request meanwhile
        _check_fits(key, kid, algorithm)
        return key.public_key

    async def aclose(self) -> None:
        if self._fetch is not None and not self._fetch.done():
            self._fetch.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _fetch_running(self) -> bool:
        return self._fetch is not None and not self._fetch.done()

    def _may_fetch(self) -> bool:
        return (
            self._attempted_at is None
            or self._clock() - self._attempted_at >= self._refetch_interval
        )

    def _is_stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._max_age

    def _retry_after(self) -> int:
        waited = 0.0 if self._attempted_at is None else self._clock() - self._attempted_at
        return max(1, math.ceil(self._refetch_interval - waited))

    async def _refresh(self) -> None:
        if not self._fetch_running():
            self._start_fetch()
        assert self._fetch is not None
        # Shielded: a caller that goes away must not cancel the fetch others are waiting for.
        await asyncio.shield(self._fetch)

    def _start_fetch(self) -> None:
        self._attempted_at = self._clock()
        self._fetch = asyncio.get_running_loop().create_task(self._download())

    async def _download(self) -> None:
        import httpx

        try:
            async with asyncio.timeout(self._timeout):
                response = await self._http().get(self.url)
            response.raise_for_status()
            keys = _usable_keys(response.json())
        except TimeoutError:
            self._failed(f"no answer within {self._timeout:g}s")
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as error:
            self._failed(f"{error.__class__.__name__}: {error}")
        except Exception as error:  # whatever the issuer sends, the caller gets a 503, not a 500
            logger.exception("Unexpected failure fetching the JWKS from %s", self.url)
            self._failed(f"{error.__class__.__name__}: {error}")
        else:
            known = set(self._keys)
            self._keys = keys
            self._fetched_at = self._clock()
            self._failure = None
            if set(keys) != known:
                logger.info("JWKS from %s: key ids %s", self.url, sorted(keys))

    def _failed(self, reason: str) -> None:
        self._failure = reason
        logger.warning(
            "JWKS fetch from %s failed (%s); %d cached keys stay in use",
            self.url,
            reason,
            len(self._keys),
        )

    def _http(self) -> httpx.AsyncClient:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout,
                headers={"Accept": "application/json", "User-Agent": f"todo-api/{__version__}"},
            )
        return self._client


@dataclass(frozen=True, slots=True)
class _Key:
    kty: str
    crv: str | None
    alg: str | None
    public_key: Any


def _usable_keys(document: Any) -> dict[str, _Key]:
    """The signing keys of a JWKS document by key id; keys without an id are never chosen."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError('JWKS is not a JSON object with a "keys" array')
    keys = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(kid := entry.get("kid"), str) or not kid:
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            jwk = PyJWK(entry)
        except jwt.PyJWTError as error:  # a key type this service cannot use: skip, like PyJWKSet
            logger.debug("JWKS key %r skipped: %s", kid, error)
            continue
        keys[kid] = _Key(str(entry["kty"]), entry.get("crv"), entry.get("alg"), jwk.key)
    if not keys:
        raise ValueError("JWKS has no usable signing key with a key id")
    return keys


def _check_fits(key: _Key, kid: str, algorithm: str) -> None:
    """Refuse a key whose type, curve or declared algorithm is not the token's algorithm."""
    kty, curves = KEY_SHAPES[algorithm]
    if (
        key.kty != kty
        or (curves is not None and key.crv not in curves)
        or (key.alg is not None and key.alg != algorithm)
    ):
        shape = " ".join(part for part in (key.kty, key.crv, key.alg) if part)
        raise AuthError(
            f'Token algorithm "{algorithm}" does not match its key {_shown(kid)} ({shape})'
        )


def _shown(kid: str) -> str:
    """A client-sent key id, quoted and cut short, safe to repeat in an error message."""
    return f'"{kid[:64]}…"' if len(kid) > 64 else f'"{kid}"'
