"""The ASGI application: routes, error handling and middleware around the injected services."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from todo_api import __version__
from todo_api.auth import TokenVerifier
from todo_api.database import DatabaseState, create_engine, create_runner
from todo_api.http.dependencies import Services
from todo_api.http.errors import install_error_handlers
from todo_api.http.middleware import (
    REQUEST_ID_HEADER,
    BodySizeLimitMiddleware,
    CORSJSONErrorsMiddleware,
    ErrorBoundaryMiddleware,
    RequestContextMiddleware,
)
from todo_api.http.preconditions import precondition_failed
from todo_api.http.rate_limiting import RateLimitMiddleware
from todo_api.http.routes import health, sync, tags, tasks
from todo_api.jobs import background_jobs
from todo_api.live.hub import StreamHub
from todo_api.logs import configure_logging
from todo_api.mcp import TaskToolsServer
from todo_api.migrations import try_upgrade, upgrade_when_reachable
from todo_api.rate_limits import RateLimiter
from todo_api.settings import Settings, load_settings
from todo_api.tasks.repository import PreconditionFailed

EXPOSED_HEADERS = [
    "X-Total-Count",
    "Link",
    "Location",
    REQUEST_ID_HEADER,
    "Retry-After",
    "RateLimit",
    "RateLimit-Policy",
    "ETag",
    "Idempotent-Replayed",
]
SYNC_REQUEST_HEADERS = ["If-Match", "If-None-Match", "Idempotency-Key", "Last-Event-ID"]
# Middle-generation passes of the garbage collector between two full passes (the default is 10).
FULL_PASS_AFTER = 1000

DESCRIPTION = """
Tasks for the users of a TODO web app. Every `/api` call needs `Authorization: Bearer <JWT>`;
the user is the token's `sub`, and nobody sees, changes or learns of another user's tasks.
Errors are JSON `{"detail": ...}`.
"""


def create_app(
    settings: Settings, *, engine: AsyncEngine | None = None, migrate_on_startup: bool = False
) -> FastAPI:
    """The app on `settings`. With `migrate_on_startup` it applies migrations when it starts,
    or, while the database is unreachable, answers 503 (readiness too) until it has."""
    engine = engine or create_engine(settings)
    services = Services(
        settings=settings,
        engine=engine,
        runner=create_runner(settings, engine),
        verifier=TokenVerifier.from_settings(settings),
        streams=StreamHub(per_user=settings.streams_per_user),
        database=DatabaseState(migrated=not migrate_on_startup),
        rate_limiter=RateLimiter.from_settings(settings),
    )
    task_tools = TaskToolsServer(
        services.verifier,
        services.tasks_of,
        authorization_server=settings.better_auth_base_url,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        migrating = None
        # A reachable database is migrated before the first request is let in; an
        # unreachable one is waited for in the background while /health answers.
        if migrate_on_startup and not await try_upgrade(services.engine, services.database):
            migrating = asyncio.create_task(
                upgrade_when_reachable(services.engine, services.database)
            )
        # What exists at start-up (modules, routes, schemas: some 100,000 objects) lives as long
        # as the process. Frozen, it is left out of the collector's full passes, each of which
        # would otherwise stall every request in flight for tens of milliseconds.
        gc.freeze()
        # A full pass walks every other long-lived object, and each open stream holds some 300
        # (its connection, its tasks): beside 1,000 streams a pass takes about 200 ms, a stall
        # of every request in flight. Under load the default (after 10 middle-generation
        # passes, once a quarter of the old objects are new) ran several a second; after 100,
        # one every few seconds still slowed requests beside the streams by 5-10 % and tripled
        # their p99; after 1,000 neither shows, and the resident memory under load is the same:
        # a cycle that lives long enough to wait for a full pass is rare (bench/RESULTS.md).
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_PASS_AFTER)
        try:
            async with (
                task_tools.running(),
                background_jobs(
                    settings, services.engine, services.runner, services.streams, services.database
                ),
            ):
                yield
        finally:
            if migrating is not None:
                migrating.cancel()
                with suppress(asyncio.CancelledError):
                    await migrating
            await services.aclose()

    app = FastAPI(
        title="Tasks API", version=__version__, description=DESCRIPTION, lifespan=lifespan
    )
    app.state.services = services
    install_error_handlers(app)
    app.add_exception_handler(PreconditionFailed, precondition_failed)
    # A request is matched against the routes in order, a few microseconds each, so the task
    # routes go first and the OpenAPI document and its pages (which FastAPI made already) last.
    # They are the app's own routes rather than included routers: FastAPI matches an included
    # router's routes twice (to pick the router, then the route), a tenth of a read's CPU time.
    # Each route already carries its router's tags and responses.
    documentation = list(app.router.routes)
    app.router.routes[:] = [
        *sync.router.routes,  # before the tasks' /{task_id} routes
        *tasks.router.routes,
        *tags.router.routes,
        *health.router.routes,
        *task_tools.routes(),
        *documentation,
    ]

    # Listed innermost first: the request id wraps everything, so even a CORS rejection or a
    # 500 carries one, and CORS headers reach error responses the browser must be able to read.
    # CORS answers preflight requests before they reach the rate limit, which counts only the
    # requests themselves.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimitMiddleware)
    app.add_middleware(ErrorBoundaryMiddleware)
    app.add_middleware(
        CORSJSONErrorsMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", REQUEST_ID_HEADER, *SYNC_REQUEST_HEADERS],
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )
    app.add_middleware(RequestContextMiddleware)
    return app


SCHEMA_READY_ENV = "TODO_API_SCHEMA_READY"
"""Set by `todo-api serve` once it has migrated, so that its workers do not check again."""


def app_from_environment() -> FastAPI:
    """The factory `todo-api serve` hands to uvicorn: one app per worker process."""
    settings = load_settings()
    configure_logging(settings)
    return create_app(settings, migrate_on_startup=os.environ.get(SCHEMA_READY_ENV) != "1")
