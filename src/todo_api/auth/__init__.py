"""Who is calling: bearer tokens verified with the shared secret (HS256) or the issuer's JWKS."""

from todo_api.auth.bearer import authenticate_bearer, authenticate_token, bearer_token
from todo_api.auth.errors import AuthError, KeysUnavailableError, Principal
from todo_api.auth.verifier import TokenVerifier, mint_token

__all__ = [
    "AuthError",
    "KeysUnavailableError",
    "Principal",
    "TokenVerifier",
    "authenticate_bearer",
    "authenticate_token",
    "bearer_token",
    "mint_token",
]
