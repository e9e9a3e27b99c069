"""Bearer-token verification: who is calling, taken from the token and nothing else."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from todo_api.schema import USER_ID_MAX
from todo_api.settings import Settings

HMAC_ALGORITHMS = ("HS256",)


class AuthError(Exception):
    """The request carries no usable credentials; `detail` tells the client why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str


class TokenVerifier:
    """Checks a JWT's signature, algorithm and claims, and names the user it was issued to."""

    def __init__(
        self,
        secret: str | None,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_seconds: int = 30,
    ) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        return cls(
            settings.better_auth_secret,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway_seconds=settings.jwt_leeway_seconds,
        )

    async def authenticate(self, token: str) -> Principal:
        algorithm = _algorithm_of(token)
        if algorithm in HMAC_ALGORITHMS and self._secret is not None:
            return self._principal(self._decode(token, self._secret, algorithm))
        raise AuthError(f'Token algorithm "{algorithm}" is not accepted; expected HS256')

    def _decode(self, token: str, key: Any, algorithm: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
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
    def _principal(claims: dict[str, Any]) -> Principal:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip() or len(subject) > USER_ID_MAX:
            raise AuthError(_BAD_SUBJECT)
        return Principal(user_id=subject)


_BAD_SUBJECT = f"Token subject (sub) must be a non-empty string of at most {USER_ID_MAX} characters"


def _algorithm_of(token: str) -> str:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise AuthError("Token is malformed: expected a JWT (header.payload.signature)") from None
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm.lower() == "none":
        raise AuthError("Token is unsigned (alg: none); a signed token is required")
    return algorithm


def mint_token(secret: str, user_id: str, *, expires_in: int = 3600) -> str:
    """An HS256 token for `user_id`, as a frontend holding the shared secret would sign it."""
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + expires_in}, secret, "HS256")
