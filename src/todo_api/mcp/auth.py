"""Who calls /mcp: the service's own bearer-token check, answered as MCP clients expect.

The token is verified by the same TokenVerifier as the REST API (HS256 and JWKS, with its
cache), so a user the API accepts is accepted here and nobody else. A refusal is a 401 in the
shape of the MCP SDK's resource-server errors, and, when Better Auth is configured, names the
RFC 9728 document that tells a client where to get a token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcp.server.auth.json_response import PydanticJSONResponse
from mcp.shared.auth import ProtectedResourceMetadata
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from todo_api.auth import (
    AuthError,
    KeysUnavailableError,
    Principal,
    TokenVerifier,
    authenticate_bearer,
)

MCP_PATH = "/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource"


class BearerAuth:
    """Lets a request through to `app` only with a token the verifier accepts, and leaves the
    caller in `request.state.principal`."""

    def __init__(
        self, app: ASGIApp, verifier: TokenVerifier, *, authorization_server: str | None
    ) -> None:
        self.app = app
        self._verifier = verifier
        self._authorization_server = authorization_server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = HTTPConnection(scope)
        authorization = connection.headers.get("authorization")
        try:
            principal = await authenticate_bearer(self._verifier, authorization)
        except AuthError as error:
            refusal = self._refusal(connection, error.detail, sent_token=authorization is not None)
            await refusal(scope, receive, send)
            return
        except KeysUnavailableError as error:
            # The token may be fine; the issuer's keys are out of reach. Not a reason to log out.
            unavailable = JSONResponse(
                {"error": "temporarily_unavailable", "error_description": error.detail},
                status_code=503,
                headers={"Retry-After": str(error.retry_after_seconds)},
            )
            await unavailable(scope, receive, send)
            return
        connection.state.principal = principal
        await self.app(scope, receive, send)

    def _refusal(self, connection: HTTPConnection, detail: str, *, sent_token: bool) -> Response:
        # RFC 6750 section 3: no error code when the request carried no credentials at all.
        challenge = ['error="invalid_token"'] if sent_token else []
        if self._authorization_server is not None:
            challenge.append(f'resource_metadata="{_base_url(connection)}{METADATA_PATH}"')
        return JSONResponse(
            {"error": "invalid_token", "error_description": detail},
            status_code=401,
            headers={"WWW-Authenticate": " ".join(["Bearer", ", ".join(challenge)]).strip()},
        )


def caller(request: Request | None) -> Principal:
    """The user BearerAuth let through; the tools act for them and nobody else."""
    principal = getattr(request.state, "principal", None) if request is not None else None
    if not isinstance(principal, Principal):
        raise RuntimeError("/mcp reached without BearerAuth in front of it")
    return principal


def protected_resource_endpoint(
    authorization_server: str,
) -> Callable[[Request], Awaitable[Response]]:
    """The RFC 9728 document: /mcp is the resource, Better Auth the server issuing its tokens."""

    async def document(request: Request) -> Response:
        metadata = ProtectedResourceMetadata.model_validate(
            {
                "resource": f"{_base_url(request)}{MCP_PATH}",
                "authorization_servers": [authorization_server],
                "resource_name": "Tasks API",
            }
        )
        return PydanticJSONResponse(metadata, headers={"Cache-Control": "public, max-age=3600"})

    return document


def _base_url(connection: HTTPConnection) -> str:
    """This service's URL as the client reached it (behind a proxy, as forwarded headers say)."""
    return str(connection.base_url).rstrip("/")
