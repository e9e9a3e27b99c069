"""The PostgreSQL server's processes moved to CPUs of their own for a run.

On a machine of two cores the database's backends otherwise run on the server's core whenever
they are busy, and each write's database work is then counted in the server's time per request
(RESULTS.md, "Where a write's cost goes"). Production databases (Neon) run elsewhere.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from harness.database import connect
from harness.options import parse_cpus


@contextmanager
def database_on(server_url: str, cpus: str | None) -> Iterator[None]:
    """The local PostgreSQL's postmaster and its children on `cpus` (a taskset list) until the
    block ends, then back on every CPU this process may use. No `cpus`: left alone."""
    if not cpus:
        yield
        return
    postmaster = asyncio.run(_postmaster_pid(server_url))
    _set_affinity(postmaster, parse_cpus(cpus))
    try:
        yield
    finally:
        _set_affinity(postmaster, os.sched_getaffinity(0))


async def _postmaster_pid(server_url: str) -> int:
    connection = await connect(server_url)
    try:
        data_directory = await connection.fetchval("SHOW data_directory")
    finally:
        await connection.close()
    pid_file = Path(data_directory) / "postmaster.pid"
    try:
        return int(pid_file.read_text().split()[0])
    except OSError as error:
        raise SystemExit(
            f"error: --database-cpus needs the PostgreSQL server on this machine ({error})"
        ) from error


def _set_affinity(postmaster: int, cpus: set[int]) -> None:
    """The postmaster's backends inherit its affinity; those already running are moved too."""
    for pid in (postmaster, *_children(postmaster)):
        with suppress(ProcessLookupError):  # a backend that ended meanwhile
            os.sched_setaffinity(pid, cpus)


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()]
