"""What a request handler needs, resolved per request from the services the app was built with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from todo_api.auth import TokenVerifier, authenticate_bearer
from todo_api.database import DatabaseNotReady, DatabaseState, StatementRunner
from todo_api.settings import Settings
from todo_api.tasks.repository import TaskRepository


@dataclass(frozen=True, slots=True)
class Services:
    """The long-lived objects one app instance runs on; built once by `create_app`."""

    settings: Settings
    engine: AsyncEngine  # migrations; on SQLite, the requests' statements too
    runner: StatementRunner  # the requests' statements (TaskRepository) and readiness
    verifier: TokenVerifier
    database: DatabaseState = field(default_factory=DatabaseState)

    def tasks_of(self, user_id: str) -> TaskRepository:
        """The user's own tasks, once the database has been migrated since start-up."""
        if not self.database.migrated:
            raise DatabaseNotReady
        return TaskRepository(self.runner, user_id)

    async def aclose(self, *, dispose_engine: bool = True) -> None:
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
        services = services_of(request)
        authorization = request.headers.get("authorization")
        principal = await authenticate_bearer(services.verifier, authorization)
        return services.tasks_of(principal.user_id)


callers_tasks = _CallersTasks(
    auto_error=False,
    scheme_name="HTTPBearer",
    description="A JWT for the signed-in user (Better Auth, or HS256 with the shared secret).",
)

UserTasks = Annotated[TaskRepository, Depends(callers_tasks)]
