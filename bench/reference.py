"""Reference apps for the benchmark: the get workload's statement with nothing around it.

    python3 dev.py bench --reference fastapi --workloads get
    python3 dev.py bench --reference starlette --workloads get

Each serves GET /api/tasks/{task_id} from the benchmark's database: one asyncpg pool, one
statement, the row validated and serialized as the service's `TaskRead`. There is no
authentication, ownership filter, middleware or logging. Set beside the service's get, they
show what the framework costs by itself (FastAPI against Starlette) and what the service adds
on top of it (the service against FastAPI).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Annotated, Any

import asyncpg
from fastapi import FastAPI, HTTPException, Path
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from todo_api.database import PostgresConnection
from todo_api.settings import load_settings
from todo_api.tasks.rows import PUBLIC_COLUMNS, task_from_row
from todo_api.tasks.schemas import TaskRead

# The column names are the schema's own, not input.
COLUMNS = ", ".join(column.name for column in PUBLIC_COLUMNS)
GET_TASK = f"SELECT {COLUMNS} FROM tasks WHERE id = $1"  # noqa: S608


class _Database:
    """The service's settings and connection arguments (DATABASE_URL, DB_POOL_SIZE, DB_POOLER)."""

    def __init__(self) -> None:
        self.settings = load_settings()
        self.connection = PostgresConnection.from_settings(self.settings)
        self.pool: Any = None

    @asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        # The same pool shape as the service's: connections opened as requests need them.
        self.pool = await asyncpg.create_pool(
            min_size=0, max_size=self.settings.db_pool_size, **self.connection.connect_kwargs()
        )
        try:
            yield
        finally:
            await self.pool.close()

    async def task(self, task_id: int) -> dict[str, Any] | None:
        async with self.pool.acquire() as connection, self._statement(connection):
            record = await connection.fetchrow(GET_TASK, task_id)
        return None if record is None else task_from_row(dict(record))

    def _statement(self, connection: Any) -> AbstractAsyncContextManager[Any]:
        # As the service does behind a transaction-mode pooler: prepare and execute in one
        # transaction, so that the pooler keeps them on one server connection.
        return connection.transaction() if self.connection.behind_pooler else nullcontext()


def create_fastapi() -> FastAPI:
    """The least a FastAPI route for get is: a validated path parameter and a response model."""
    database = _Database()
    app = FastAPI(lifespan=database.lifespan)
    app.get("/health")(_healthy)

    @app.get("/api/tasks/{task_id}", response_model=TaskRead)
    async def get_task(task_id: Annotated[int, Path(ge=1)]) -> Any:
        task = await database.task(task_id)
        if task is None:
            raise HTTPException(404, detail="Task not found")
        return task

    return app


def create_starlette() -> Starlette:
    """The same route on Starlette, which FastAPI is built on."""
    database = _Database()

    async def get_task(request: Request) -> Response:
        task = await database.task(int(request.path_params["task_id"]))
        if task is None:
            return Response(b'{"detail":"Task not found"}', 404, media_type="application/json")
        body = TaskRead.model_validate(task).model_dump_json()
        return Response(body, media_type="application/json")

    return Starlette(
        routes=[Route("/health", _healthy), Route("/api/tasks/{task_id:int}", get_task)],
        lifespan=database.lifespan,
    )


async def _healthy(_request: Request) -> Response:
    """What the benchmark waits for before it starts."""
    return Response(b'{"status":"ok"}', media_type="application/json")
