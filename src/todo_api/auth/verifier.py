"""Bearer-token verification: who is calling, taken from the token and nothing else.

The token's `alg` decides how it is checked, and each kind has exactly one source of keys:
HS256 only ever with the shared secret, an asymmetric algorithm only with a key from the
issuer's JWKS whose type fits that algorithm. So neither kind can pass as the other.

Header and claims are held to the types RFC 7515 and RFC 7519 give them before any key is
looked up: a JSON object each, `alg` and `kid` strings, no `crit` (no extension is supported),
exp/nbf/iat JSON numbers. PyJWT alone would read `"exp": "9999999999"` as a date.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Any

import jwt
from jwt.utils import base64url_decode

from todo_api.auth.cache import VerifiedTokenCache
from todo_api.auth.errors import AuthError, Principal
from todo_api.auth.jwks import ASYMMETRIC_ALGORITHMS, JwksKeySource
from todo_api.schema import USER_ID_MAX, unstorable_character
from todo_api.settings import Settings, check_auth_configured

HMAC_ALGORITHMS = ("HS256",)


class TokenVerifier:
    """Checks a JWT's signature, algorithm and claims, and names the user it was issued to."""

    def __init__(
        self,
        secret: str | None,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_seconds: int = 30,
        jwks: JwksKeySource | None = None,
        jwks_issuer: Sequence[str] | None = None,
        jwks_audience: Sequence[str] | None = None,
        cache_size: int = 4096,
    ) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds
        self._jwks = jwks
        self._jwks_issuer = jwks_issuer
        self._jwks_audience = jwks_audience
        self._cache: VerifiedTokenCache[Principal] = VerifiedTokenCache(cache_size)
        self._accepted = (HMAC_ALGORITHMS if secret is not None else ()) + (
            ASYMMETRIC_ALGORITHMS if jwks is not None else ()
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        check_auth_configured(settings)  # never a JWKS mode that cannot check iss and aud
        jwks_url = settings.jwks_url
        jwks = None
        if jwks_url is not None:
            jwks = JwksKeySource(
                jwks_url,
                timeout_seconds=settings.jwks_fetch_timeout_seconds,
                refetch_interval_seconds=settings.jwks_refetch_interval_seconds,
                max_age_seconds=settings.jwks_max_age_seconds,
            )
        base = settings.better_auth_base_url
        return cls(
            settings.better_auth_secret,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway_seconds=settings.jwt_leeway_seconds,
            jwks=jwks,
            jwks_issuer=_accepted_forms(settings.jwt_issuer or base),
            jwks_audience=_accepted_forms(settings.jwt_audience or base),
            cache_size=settings.token_cache_size,
        )

    async def authenticate(self, token: str) -> Principal:
        if (known := self._cache.get(token)) is not None:
            return known
        header, unverified_claims = _parts_of(token)
        algorithm = _algorithm_of(header)
        _check_numeric_dates(unverified_claims)
        if algorithm in HMAC_ALGORITHMS and self._secret is not None:
            claims = self._decode(token, self._secret, algorithm, self._issuer, self._audience)
        elif algorithm in ASYMMETRIC_ALGORITHMS and self._jwks is not None:
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise AuthError('Token header has no key id ("kid"); cannot pick its JWKS key')
            key = await self._jwks.key_for(kid, algorithm)
            claims = self._decode(token, key, algorithm, self._jwks_issuer, self._jwks_audience)
        else:
            raise AuthError(
                f'Token algorithm "{algorithm}" is not accepted; expected '
                + " or ".join(self._accepted)
            )
        principal = self._principal(claims, valid_until=float(claims["exp"]) + self._leeway)
        self._cache.put(token, principal, valid_until=principal.valid_until)
        return principal

    async def aclose(self) -> None:
        if self._jwks is not None:
            await self._jwks.aclose()

    def _decode(
        self,
        token: str,
        key: Any,
        algorithm: str,
        issuer: str | Sequence[str] | None,
        audience: str | Sequence[str] | None,
    ) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=issuer,
                audience=audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub"], "verify_aud": audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("Token has expired") from None
        except jwt.InvalidSignatureError:
            raise AuthError("Token signature is invalid") from None
        except jwt.MissingRequiredClaimError as error:
            raise AuthError(f'Token has no "{error.claim}" claim') from None
        except jwt.ImmatureSignatureError:
            raise AuthError("Token is not valid yet (nbf or iat is in the future)") from None
        except jwt.InvalidIssuerError:
            raise AuthError("Token issuer (iss) is not accepted") from None
        except jwt.InvalidAudienceError:
            raise AuthError("Token audience (aud) is not accepted") from None
        except jwt.exceptions.InvalidSubjectError:
            raise AuthError(_BAD_SUBJECT) from None
        except jwt.DecodeError:
            raise AuthError("Token is malformed") from None
        except jwt.InvalidTokenError as error:
            raise AuthError(f"Token is invalid: {error}") from None

    @staticmethod
    def _principal(claims: dict[str, Any], *, valid_until: float) -> Principal:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip() or len(subject) > USER_ID_MAX:
            raise AuthError(_BAD_SUBJECT)
        if unstorable_character(subject) is not None:  # no user could ever own a task
            raise AuthError(
                "Token subject (sub) must not contain NUL (\\u0000) or unpaired surrogate "
                "(\\ud800 to \\udfff) characters"
            )
        return Principal(user_id=subject, valid_until=valid_until)


_BAD_SUBJECT = f"Token subject (sub) must be a non-empty string of at most {USER_ID_MAX} characters"


def _parts_of(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The token's header and claims, decoded but not verified yet (JWS compact form)."""
    segments = token.split(".")
    if len(segments) != 3:
        raise AuthError("Token is malformed: expected a JWT (header.payload.signature)")
    return _json_object(segments[0], "header"), _json_object(segments[1], "payload")


def _json_object(segment: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(base64url_decode(segment))
    except (ValueError, RecursionError):  # base64, UTF-8, JSON syntax, or a number too long
        raise AuthError(f"Token is malformed: its {name} is not base64url-encoded JSON") from None
    if not isinstance(value, dict):
        raise AuthError(f"Token is malformed: its {name} is not a JSON object")
    return value


def _algorithm_of(header: dict[str, Any]) -> str:
    """The algorithm a well-formed header names (RFC 7515 section 4.1)."""
    if "crit" in header:
        # The service implements no JWS extension, so no critical one can be honoured.
        raise AuthError(
            "Token header lists critical extensions (crit) that this service does not support"
        )
    algorithm = header.get("alg")
    if not isinstance(algorithm, str):
        raise AuthError('Token header has no algorithm: "alg" must be a string')
    if algorithm.lower() == "none":
        raise AuthError("Token is unsigned (alg: none); a signed token is required")
    if not isinstance(header.get("kid", ""), str):
        raise AuthError('Token header\'s key id ("kid") must be a string')
    return algorithm


NUMERIC_DATE_CLAIMS = ("exp", "nbf", "iat")
_JSON_KINDS = {str: "a string", bool: "a boolean", type(None): "null", list: "an array"}


def _check_numeric_dates(claims: dict[str, Any]) -> None:
    """exp, nbf and iat are NumericDates: JSON numbers (RFC 7519), not "1700000000" or true."""
    for name in NUMERIC_DATE_CLAIMS:
        if name in claims and not _is_numeric_date(value := claims[name]):
            kind = _JSON_KINDS.get(type(value), "an object" if isinstance(value, dict) else None)
            raise AuthError(
                f'Token claim "{name}" must be a number of seconds since 1970 (a NumericDate), '
                f"not {kind or 'a number out of range'}"
            )


def _is_numeric_date(value: Any) -> bool:
    # bool is an int to Python, and json reads NaN, Infinity and 1e999 as floats.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        return False


def _accepted_forms(url: str | None) -> list[str] | None:
    """A URL-valued claim as configured, with or without a trailing slash, which users mix up."""
    if url is None:
        return None
    bare = url.rstrip("/")
    return [bare, f"{bare}/"]


def mint_token(secret: str, user_id: str, *, expires_in: int = 3600) -> str:
    """An HS256 token for `user_id`, as a frontend holding the shared secret would sign it."""
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + expires_in}, secret, "HS256")
