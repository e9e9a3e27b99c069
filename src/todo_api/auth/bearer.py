"""The caller of a request, from its `Authorization: Bearer <token>` header."""

from __future__ import annotations

from todo_api.auth.errors import AuthError, Principal
from todo_api.auth.verifier import TokenVerifier
from todo_api.logs import tag_user


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization` header value, or AuthError saying what is wrong with it."""
    if authorization is None:
        raise AuthError("Missing Authorization header; send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("Malformed Authorization header; expected 'Bearer <token>'")
    return token


async def authenticate_bearer(verifier: TokenVerifier, authorization: str | None) -> Principal:
    """Who sends this `Authorization` header; from here on the request's log lines name them."""
    return await authenticate_token(verifier, bearer_token(authorization))


async def authenticate_token(verifier: TokenVerifier, token: str) -> Principal:
    """Who this bearer token names; from here on the request's log lines name them."""
    principal = await verifier.authenticate(token)
    tag_user(principal.user_id)
    return principal
