"""What a request handler needs, resolved per request from the services the app was built with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from todo_api.auth import Principal, TokenVerifier, authenticate_token, bearer_token
from todo_api.database import DatabaseNotReady, DatabaseState, StatementRunner
from todo_api.live.hub import StreamHub
from todo_api.rate_limits import RateLimiter
from todo_api.settings import Settings
from todo_api.tasks.repository import TaskRepository


@dataclass(frozen=True, slots=True)
class Services:
    """The long-lived objects one app instance runs on; built once by `create_app`."""

    settings: Settings
    engine: AsyncEngine  # migrations; on SQLite, the requests' statements too
    runner: StatementRunner  # the requests' statements (TaskRepository) and readiness
    verifier: TokenVerifier
    streams: StreamHub  # this process's live streams (live.hub)
    database: DatabaseState = field(default_factory=DatabaseState)
    rate_limiter: RateLimiter | None = None  # None: requests are not limited (RATE_LIMIT=0)

    def tasks_of(self, user_id: str) -> TaskRepository:
        """The user's own tasks, once the database has been migrated since start-up."""
        if not self.database.migrated:
            raise DatabaseNotReady
        return TaskRepository(self.runner, user_id)

    async def aclose(self, *, dispose_engine: bool = True) -> None:
        if self.rate_limiter is not None:
            await self.rate_limiter.aclose()
        await self.verifier.aclose()
        await self.runner.aclose()
        if dispose_engine:
            await self.engine.dispose()


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


# The dependencies are coroutines, even those that never await: FastAPI runs a plain function
# in its thread pool, and the hop there and back would cost more than the work itself.
async def get_services(request: Request) -> Services:
    return services_of(request)


AppServices = Annotated[Services, Depends(get_services)]


class _CallersTasks(HTTPBearer):
    """The caller's own tasks: the user is the verified bearer token's subject, nothing else.

    A bearer scheme itself, so OpenAPI documents the `Authorization` header on every operation
    that uses it. It is one dependency rather than a chain (services, token, user, repository):
    resolving each dependency costs FastAPI more than what most of them do.
    """

    async def __call__(self, request: Request) -> TaskRepository:  # type: ignore[override]
        principal = await self.principal(request)
        return services_of(request).tasks_of(principal.user_id)

    async def principal(self, request: Request) -> Principal:
        services = services_of(request)
        principal = await authenticate_token(services.verifier, await self.token(request))
        if not services.database.migrated:
            raise DatabaseNotReady
        return principal

    async def token(self, request: Request) -> str:
        return bearer_token(request.headers.get("authorization"))


class _StreamCaller(_CallersTasks):
    """The caller of a live stream. Browsers' EventSource cannot set headers, so without an
    Authorization header the token may come as `?access_token=`; it is never logged (the access
    log writes the path without the query)."""

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        return await self.principal(request)

    async def token(self, request: Request) -> str:
        if "authorization" not in request.headers:
            token = request.query_params.get("access_token")
            if token:
                return token
        return await super().token(request)


_BEARER_DESCRIPTION = "A JWT for the signed-in user (Better Auth, or HS256 with the shared secret)."
callers_tasks = _CallersTasks(
    auto_error=False, scheme_name="HTTPBearer", description=_BEARER_DESCRIPTION
)
stream_caller = _StreamCaller(
    auto_error=False, scheme_name="HTTPBearer", description=_BEARER_DESCRIPTION
)

UserTasks = Annotated[TaskRepository, Depends(callers_tasks)]
StreamCaller = Annotated[Principal, Depends(stream_caller)]
