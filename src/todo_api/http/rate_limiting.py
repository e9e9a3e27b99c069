"""The rate limit in front of every route and mounted app: budgets per user, else per address.

Pure ASGI middleware rather than a route dependency, so apps mounted into the service (/mcp) are
limited like the REST routes. The caller is named by the same verifier the routes use, whose
cache makes the route's own verification of the token a lookup; the route alone answers for the
token (401, 503), and a token that does not verify here only means the request is counted
against its client address.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders, QueryParams
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from todo_api.http.dependencies import Services
from todo_api.http.middleware import _HTTPMiddleware
from todo_api.logs import current_request
from todo_api.rate_limits import Budget

UNLIMITED_PATHS = frozenset({"/health", "/health/ready"})
"""Probes of load balancers and orchestrators, which must never be refused."""

POLICY = '"default"'
"""The name of the one policy in the RateLimit fields, as revisions 08 to 11 of
draft-ietf-httpapi-ratelimit-headers write them: `"default";q=600;w=60`, `"default";r=599;t=60`."""


class RateLimitMiddleware(_HTTPMiddleware):
    """Counts each request against its caller's budget: `429` over it, and the `RateLimit` and
    `RateLimit-Policy` fields on every response to a counted request."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        services: Services = scope["app"].state.services
        limiter = services.rate_limiter
        if limiter is None or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        budget = await limiter.hit(*await _caller(scope, services))
        if budget is None:  # not counted: the budgets' storage is unreachable (fail open)
            await self.app(scope, receive, send)
            return
        fields = _rate_limit_fields(budget)
        if not budget.allowed:
            retry_after = max(budget.reset_seconds, 1)
            refusal = JSONResponse(
                {
                    "detail": f"Too many requests: the limit is {budget.quota} requests per "
                    f"{budget.window_seconds} seconds; retry in {retry_after} seconds"
                },
                status_code=429,
                headers=fields | {"Retry-After": str(retry_after)},
            )
            await refusal(scope, receive, send)
            return

        async def send_with_fields(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in fields.items():
                    headers.append(name, value)
            await send(message)

        await self.app(scope, receive, send_with_fields)


async def _caller(scope: Scope, services: Services) -> tuple[str, str]:
    """Whose budget a request counts against: the user of a token that verifies, otherwise the
    client address (behind a proxy, what uvicorn's --proxy-headers make of it)."""
    token = _token(scope)
    principal = None
    if token is not None:
        try:
            principal = await services.verifier.authenticate(token)
        except Exception:  # whatever it is, the route meets it again and answers for it
            principal = None
    if principal is not None:
        if context := current_request.get():
            context.user_id = principal.user_id
        return "user", principal.user_id
    client = scope.get("client")
    return "address", client[0] if client else "unknown"


def _token(scope: Scope) -> str | None:
    """The bearer token from `Authorization`, or else from `?access_token=` (the way browsers'
    EventSource, which cannot set headers, sends it)."""
    scheme, _, credentials = Headers(scope=scope).get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    query: bytes = scope.get("query_string", b"")
    if b"access_token=" not in query:  # the usual case, decided without parsing the query
        return None
    return QueryParams(query).get("access_token") or None


def _rate_limit_fields(budget: Budget) -> dict[str, str]:
    return {
        "RateLimit-Policy": f"{POLICY};q={budget.quota};w={budget.window_seconds}",
        "RateLimit": f"{POLICY};r={budget.remaining};t={budget.reset_seconds}",
    }
