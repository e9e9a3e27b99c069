"""Starting the real `todo-api` command as a process, as a user would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

TODO_API = str(Path(sys.executable).parent / "todo-api")

# Settings the service reads; a test process starts from none of them.
_SERVICE_VARIABLES = (
    "DATABASE_URL",
    "BETTER_AUTH_SECRET",
    "BETTER_AUTH_URL",
    "BETTER_AUTH_JWKS_URL",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWKS_FETCH_TIMEOUT_SECONDS",
    "JWKS_REFETCH_INTERVAL_SECONDS",
    "JWKS_MAX_AGE_SECONDS",
    "TOKEN_CACHE_SIZE",
    "RATE_LIMIT",
    "REDIS_URL",
    "REDIS_KEY_PREFIX",
    "ENVIRONMENT",
    "HOST",
    "PORT",
    "WORKERS",
)


def service_environment(**settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _SERVICE_VARIABLES}
    return env | settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TODO_API, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@dataclass(frozen=True)
class Server:
    url: str
    log: Path
    process: subprocess.Popen[bytes]


@contextmanager
def running_server(
    cwd: Path, env: dict[str, str], *extra: str, may_be_killed: bool = False
) -> Iterator[Server]:
    """`todo-api serve` on a free port, stopped with SIGTERM afterwards (unless the test has
    killed it: `may_be_killed`)."""
    port = free_port()
    log_path = cwd / f"server-{port}.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [TODO_API, "serve", "--port", str(port), *extra],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base_url, process, log_path)
        yield Server(base_url, log_path, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
    # A graceful stop: uvicorn finishes, then re-raises the signal it caught.
    if not (may_be_killed and process.returncode == -signal.SIGKILL):
        assert process.returncode in (0, -signal.SIGTERM), log_path.read_text()


def _wait_until_up(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not come up:\n{log.read_text()}")
