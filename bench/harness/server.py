"""The server under test: started pinned to its CPUs, waited for, stopped."""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from harness.config import BENCH, RESULTS
from harness.report import descendants

# --------------------------------------------------------------------------- server and load


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the server itself, or its worker children."""
        children = [
            pid
            for pid in descendants(self.process.pid)
            if "multiprocessing" not in _cmdline(pid) or "spawn_main" in _cmdline(pid)
        ]
        return children or [self.process.pid]

    @property
    def all_pids(self) -> list[int]:
        return [self.process.pid, *descendants(self.process.pid)]


def _cmdline(pid: int) -> str:
    with suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


# The checkout's own service, installed in the .venv this harness runs in.
THIS_TODO_API = Path(sys.executable).parent / "todo-api"


def server_command(args: argparse.Namespace, todo_api: Path = THIS_TODO_API) -> list[str]:
    """`todo-api serve` (of this checkout unless told which), or uvicorn with a reference app
    (bench/reference.py)."""
    address = ["--host", "127.0.0.1", "--port", str(args.port)]
    if args.reference:
        app = f"reference:create_{args.reference}"
        uvicorn = [sys.executable, "-m", "uvicorn", app, "--factory", "--app-dir", str(BENCH)]
        return [*uvicorn, *address, "--no-access-log", "--log-level", "warning"]
    return [str(todo_api), "serve", *address, "--workers", str(args.workers)]


@contextmanager
def running_server(
    args: argparse.Namespace,
    env: dict[str, str],
    workdir: Path,
    todo_api: Path = THIS_TODO_API,
    *,
    wrapper: Sequence[str] = (),
    startup_seconds: float = 60,
) -> Iterator[Server]:
    """The server, pinned to `--server-cpus`, run by `wrapper` (say valgrind) when given, and
    waited for up to `startup_seconds`."""
    _ensure_port_free(args.port)
    log = RESULTS / f"server-{args.label}.log"
    command = ["taskset", "-c", args.server_cpus, *wrapper, *server_command(args, todo_api)]
    with log.open("w") as log_file:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        server = Server(process, f"http://127.0.0.1:{args.port}", log)
        try:
            _wait_until_up(server, args.workers, startup_seconds)
            yield server
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _ensure_port_free(port: int) -> None:
    """Another server on the port would answer the health check and take the load (with
    tokens it refuses), while this run's server fails to bind."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(f"error: port {port} is in use already: pick another --port")


def _wait_until_up(server: Server, workers: int, seconds: float) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"error: the server exited:\n{server.log.read_text()}")
        with suppress(httpx.TransportError):
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200 and (
                workers == 1 or len(server.worker_pids) >= workers
            ):
                return
        time.sleep(0.2)
    raise SystemExit(f"error: the server did not come up:\n{server.log.read_text()}")
