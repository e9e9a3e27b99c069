"""A PgBouncer of the test's own, started by `setup.sh` (transaction mode, client TLS).

Its server side is the PostgreSQL at PGBOUNCER_UPSTREAM (default 127.0.0.1:5432); every
database there is reachable through it by name.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.server import free_port

SETUP = Path(__file__).with_name("setup.sh")


@dataclass(frozen=True)
class PgBouncer:
    port: int
    state: Path

    @property
    def certificate(self) -> Path:
        return self.state / "server.crt"

    def url(self, database: str, parameters: str = "sslmode=require") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}?{parameters}"

    def start(self) -> None:
        result = subprocess.run(
            ["bash", str(SETUP), str(self.port), str(self.state)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            message = f"PgBouncer could not be set up: {result.stderr.strip()}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)

    def kill(self) -> None:
        """Gone at once, as a crashed pooler or a dropped network path: connections reset."""
        os.kill(self._pid(), signal.SIGKILL)
        (self.state / "pgbouncer.pid").unlink(missing_ok=True)

    def pause(self) -> None:
        """Queries wait (PgBouncer's PAUSE), as while a suspended Neon compute wakes up.

        Returns once PgBouncer holds every new query: through the admin console, which answers
        PAUSE only then (a signal would be handled some time after this returns, and a query
        sent meanwhile would still be answered)."""
        self._admin("PAUSE")

    def resume(self) -> None:
        self._admin("RESUME")

    def stop(self) -> None:
        subprocess.run(["bash", str(SETUP), "stop", str(self.port), str(self.state)], check=False)

    def _pid(self) -> int:
        return int((self.state / "pgbouncer.pid").read_text())

    def _admin(self, command: str) -> None:
        async def run() -> None:
            console = await asyncpg.connect(
                host="127.0.0.1",
                port=self.port,
                user="postgres",
                database="pgbouncer",
                ssl="require",
                statement_cache_size=0,
            )
            try:
                # execute() without arguments: the console speaks only the simple protocol.
                await console.execute(command)
            finally:
                await console.close()

        # The caller may be inside a running event loop (an async test): a loop of its own.
        with ThreadPoolExecutor(max_workers=1) as thread:
            thread.submit(asyncio.run, run()).result(timeout=30)


@contextmanager
def pgbouncer_on_free_port(*, start: bool = True) -> Iterator[PgBouncer]:
    """A PgBouncer of its own (started unless `start` is false), removed afterwards."""
    # Not under pytest's tmp_path: PgBouncer runs as `postgres` and must reach its folder.
    state = Path(tempfile.mkdtemp(prefix="todo-api-pgbouncer-"))
    bouncer = PgBouncer(free_port(), state)
    try:
        if start:
            bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def pgbouncer() -> Iterator[PgBouncer]:
    """A PgBouncer in front of the PostgreSQL of the PostgreSQL test passes (a test that uses
    it runs only in those: see pytest_collection_modifyitems in conftest.py)."""
    with pgbouncer_on_free_port() as bouncer:
        yield bouncer
