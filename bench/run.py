#!/usr/bin/env python3
"""Benchmark of the Tasks API: the real `todo-api serve` on PostgreSQL, driven by wrk.

    python3 dev.py bench                      # every workload, 16 and 64 connections, 1 worker
    python3 dev.py bench --workers 2          # the same against two worker processes
    python3 dev.py bench --duration 5 --runs 3 --workloads list,get --connections 64
    python3 dev.py bench --auth eddsa         # EdDSA tokens verified against a local JWKS
    python3 dev.py bench --reference fastapi --workloads get  # a bare app's get (reference.py)

Setup, all by this script: wrk from Debian's packages if it is missing, a throwaway database on
the PostgreSQL server (`--server`, default postgresql://postgres@127.0.0.1:5432/postgres),
migrations, 100 users x 50 tasks plus one user with 10,000 tasks, and one pre-minted token per
user. The service runs as production would (ENVIRONMENT=production, INFO logging as JSON lines
to a file, no reload), except without rate limits (RATE_LIMIT=0; `--env RATE_LIMIT=...` to
measure with one), pinned to one core with taskset; wrk runs pinned to the other core.

Each (workload, connections) pair gets a warm-up and then `--runs` measured runs; the table shows
medians. A run with any non-2xx answer or socket error is invalid and makes the exit status 1.
Results go to bench/results/<time>-<label>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
LUA_SCRIPT = BENCH / "workload.lua"

WORKLOADS = ("list", "get", "create", "toggle", "mixed")
USERS = 100
TASKS_PER_USER = 50
BIG_USER_TASKS = 10_000
BIG_USER = "bench-big-user"

# Targets at 64 connections, one worker: (requests/s at least, p99 ms at most).
TARGETS = {
    "list": (2000, 50.0),
    "get": (3500, 30.0),
    "create": (3000, 30.0),
    "toggle": (3000, 30.0),
    "mixed": (2500, 40.0),
}
STALL_FACTOR = 5.0  # p99 must stay under this many times p50
RSS_LIMIT_MB = 100.0
BIG_USER_FACTOR = 2.0

# Settings the service reads; the server starts from none of the caller's.
_SERVICE_VARIABLES = (
    "DATABASE_URL",
    "BETTER_AUTH_SECRET",
    "BETTER_AUTH_URL",
    "BETTER_AUTH_JWKS_URL",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "ENVIRONMENT",
    "HOST",
    "PORT",
    "WORKERS",
    "LOG_LEVEL",
    "LOG_JSON",
    "RATE_LIMIT",
    "REDIS_URL",
)


def _reexec_in_venv() -> None:
    """Run inside the checkout's .venv (made by dev.py) whichever python started this script."""
    venv_python = ROOT / ".venv" / "bin" / "python"
    if Path(sys.prefix).resolve() == (ROOT / ".venv").resolve():
        return
    sys.path.insert(0, str(ROOT))
    import dev

    dev.ensure_environment()
    os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])  # noqa: S606


# --------------------------------------------------------------------------- measurements


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (0 for one that is gone)."""
    ticks = 0
    for pid in pids:
        with suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds([pid]) for pid in pids}


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process has had, in MB."""
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def parse_wrk_output(output: str) -> dict[str, Any]:
    """The JSON line the Lua done() hook prints."""
    for line in output.splitlines():
        if line.startswith("BENCH_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
            return result
    raise RuntimeError(f"wrk printed no BENCH_RESULT line:\n{output}")


def error_count(wrk_result: dict[str, Any]) -> int:
    return sum(wrk_result["errors"].values())


@dataclass
class Run:
    """One measured wrk run and what the server spent on it."""

    wrk: dict[str, Any]
    server_cpu_s: float
    db_cpu_s: float

    @property
    def requests(self) -> int:
        return int(self.wrk["requests"])

    @property
    def rps(self) -> float:
        return self.requests / (self.wrk["duration_us"] / 1e6)

    def latency_ms(self, name: str) -> float:
        return float(self.wrk["latency_us"][name]) / 1000

    @property
    def errors(self) -> int:
        return error_count(self.wrk)

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / max(self.requests, 1)

    @property
    def db_cpu_ms_per_request(self) -> float:
        return 1000 * self.db_cpu_s / max(self.requests, 1)


@dataclass
class Row:
    """Every run of one workload at one connection count, summarised by medians."""

    workload: str
    connections: int
    runs: list[Run] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)

    def median(self, value: str) -> float:
        getter = {
            "rps": lambda run: run.rps,
            "p50": lambda run: run.latency_ms("p50"),
            "p90": lambda run: run.latency_ms("p90"),
            "p99": lambda run: run.latency_ms("p99"),
            "cpu": lambda run: run.cpu_ms_per_request,
            "db_cpu": lambda run: run.db_cpu_ms_per_request,
        }[value]
        return statistics.median(getter(run) for run in self.runs)

    @property
    def errors(self) -> int:
        return sum(run.errors for run in self.runs)

    def summary(self) -> dict[str, Any]:
        p50, p99 = self.median("p50"), self.median("p99")
        summary: dict[str, Any] = {
            "workload": self.workload,
            "connections": self.connections,
            "rps": round(self.median("rps"), 1),
            "p50_ms": round(p50, 2),
            "p90_ms": round(self.median("p90"), 2),
            "p99_ms": round(p99, 2),
            "p99_over_p50": round(p99 / p50, 2) if p50 else None,
            "errors": self.errors,
            "valid": self.errors == 0,
            "server_cpu_ms_per_request": round(self.median("cpu"), 3),
            "db_cpu_ms_per_request": round(self.median("db_cpu"), 3),
            "peak_rss_mb_per_worker": self.rss_mb,
            "runs": [
                {
                    "rps": round(run.rps, 1),
                    "server_cpu_ms_per_request": round(run.cpu_ms_per_request, 3),
                    "db_cpu_ms_per_request": round(run.db_cpu_ms_per_request, 3),
                    **run.wrk,
                }
                for run in self.runs
            ],
        }
        summary["checks"] = checks_for(summary)
        return summary


def checks_for(row: dict[str, Any]) -> dict[str, bool]:
    """Which targets a summarised row meets (throughput and p99 only at 64 connections)."""
    checks = {
        "no_errors": row["errors"] == 0,
        "no_stalls": row["p99_over_p50"] is not None and row["p99_over_p50"] < STALL_FACTOR,
        "rss": all(mb < RSS_LIMIT_MB for mb in row["peak_rss_mb_per_worker"]),
    }
    if row["connections"] == 64 and row["workload"] in TARGETS:
        rps, p99 = TARGETS[row["workload"]]
        checks["rps"] = row["rps"] >= rps
        checks["p99"] = row["p99_ms"] <= p99
    return checks


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'workload':<9} {'conns':>5} {'req/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
        f"{'p99/p50':>7} {'errors':>6} {'cpu ms/req':>10} {'db ms/req':>9} {'RSS MB':>7}  "
        "target"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        target = ""
        if "rps" in row["checks"]:
            rps, p99 = TARGETS[row["workload"]]
            verdict = "met" if all(row["checks"].values()) else "NOT met"
            target = f">={rps} req/s, p99<={p99:g} ms: {verdict}"
        elif not all(row["checks"].values()):
            target = "NOT met: " + ", ".join(k for k, ok in row["checks"].items() if not ok)
        rss = max(row["peak_rss_mb_per_worker"] or [0.0])
        lines.append(
            f"{row['workload']:<9} {row['connections']:>5} {row['rps']:>8.0f} "
            f"{row['p50_ms']:>7.2f} {row['p90_ms']:>7.2f} {row['p99_ms']:>7.2f} "
            f"{row['p99_over_p50'] or 0:>7.1f} {row['errors']:>6} "
            f"{row['server_cpu_ms_per_request']:>10.3f} {row['db_cpu_ms_per_request']:>9.3f} "
            f"{rss:>7.1f}  {target}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- setup


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk:
        return wrk
    print("Installing wrk from the distribution's packages ...", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.check_call([*sudo, "apt-get", "update", "-qq"])
    subprocess.check_call([*sudo, "apt-get", "install", "-y", "-qq", "wrk"])
    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("error: wrk is not installed and could not be installed")
    return wrk


def ensure_py_spy() -> str:
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        print("Installing py-spy into .venv ...", flush=True)
        subprocess.check_call(
            [sys.executable, "-m", "pip", "install", "--quiet", "py-spy>=0.4,<1"],
        )
    return str(py_spy)


def database_url(server_url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(server_url).set(drivername="postgresql", database=name)
    return url.render_as_string(hide_password=False)


async def _connect(url: str) -> Any:
    import asyncpg

    return await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))


async def create_database(server_url: str, name: str) -> None:
    connection = await _connect(server_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def drop_database(server_url: str, name: str) -> None:
    connection = await _connect(server_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


SEED_SQL = """
INSERT INTO tasks (user_id, title, description, completed, created_at, updated_at)
SELECT users.user_id,
       'Task ' || n,
       CASE WHEN n % 2 = 0 THEN 'Details of task ' || n END,
       n % 3 = 0,
       now() - make_interval(secs => users.size - n),
       now() - make_interval(secs => users.size - n)
FROM (
    SELECT 'bench-user-' || lpad(u::text, 3, '0') AS user_id, $1::int AS size
    FROM generate_series(0, $2::int - 1) AS u
    UNION ALL SELECT $3::text, $4::int
) AS users
CROSS JOIN LATERAL generate_series(1, users.size) AS n
"""


async def seed(url: str) -> dict[str, list[int]]:
    """100 users x 50 tasks and one user with 10,000, in one statement; their task ids."""
    connection = await _connect(url)
    try:
        await connection.execute(SEED_SQL, TASKS_PER_USER, USERS, BIG_USER, BIG_USER_TASKS)
        await connection.execute("VACUUM ANALYZE tasks")
        rows = await connection.fetch(
            "SELECT user_id, array_agg(id ORDER BY id) AS ids FROM tasks GROUP BY user_id"
        )
    finally:
        await connection.close()
    return {row["user_id"]: list(row["ids"]) for row in rows}


async def reset_writes(url: str, last_seeded_id: int) -> None:
    """Remove what create workloads added, so every workload sees the seeded data."""
    connection = await _connect(url)
    try:
        await connection.execute("DELETE FROM tasks WHERE id > $1", last_seeded_id)
        await connection.execute("VACUUM ANALYZE tasks")
    finally:
        await connection.close()


async def backend_pids(url: str, database: str) -> list[int]:
    connection = await _connect(url)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await connection.close()
    return [row["pid"] for row in rows]


# --------------------------------------------------------------------------- tokens


@dataclass
class Auth:
    """How tokens are minted and what the service must be told to verify them."""

    mode: str
    secret: str
    environment: dict[str, str]
    private_key: Any = None
    issuer: str | None = None

    def token(self, user_id: str) -> str:
        import jwt

        now = int(time.time())
        claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + 24 * 3600}
        if self.mode == "hs256":
            return jwt.encode(claims, self.secret, "HS256")
        claims |= {"iss": self.issuer, "aud": self.issuer}
        return jwt.encode(claims, self.private_key, "EdDSA", headers={"kid": JWKS_KID})


JWKS_KID = "bench-key-1"


@contextmanager
def auth_mode(mode: str, jwks_port: int) -> Iterator[Auth]:
    secret = secrets.token_urlsafe(48)
    if mode == "hs256":
        yield Auth(mode, secret, {"BETTER_AUTH_SECRET": secret})
        return
    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
    )

    private_key = Ed25519PrivateKey.generate()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(private_key.public_key()))
    body = json.dumps({"keys": [jwk | {"kid": JWKS_KID, "alg": "EdDSA", "use": "sig"}]}).encode()

    class JWKSHandler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", jwks_port), JWKSHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{jwks_port}"
    try:
        yield Auth(
            mode,
            secret,
            {
                # The HS256 secret stays set, as in a deployment that accepts both.
                "BETTER_AUTH_SECRET": secret,
                "BETTER_AUTH_URL": base,
                "BETTER_AUTH_JWKS_URL": f"{base}/api/auth/jwks",
                "JWT_ISSUER": base,
                "JWT_AUDIENCE": base,
            },
            private_key=private_key,
            issuer=base,
        )
    finally:
        server.shutdown()


def write_lua_data(path: Path, workload: str, tokens: list[str], ids: list[list[int]]) -> None:
    token_list = ",\n".join(f'  "{token}"' for token in tokens)
    id_list = ",\n".join("  {" + ", ".join(map(str, user_ids)) + "}" for user_ids in ids)
    path.write_text(
        f'return {{\nworkload = "{workload}",\ntokens = {{\n{token_list}\n}},\n'
        f"ids = {{\n{id_list}\n}}\n}}\n"
    )


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


def server_command(args: argparse.Namespace) -> list[str]:
    """`todo-api serve`, or uvicorn with a reference app (bench/reference.py)."""
    address = ["--host", "127.0.0.1", "--port", str(args.port)]
    if args.reference:
        app = f"reference:create_{args.reference}"
        uvicorn = [sys.executable, "-m", "uvicorn", app, "--factory", "--app-dir", str(BENCH)]
        return [*uvicorn, *address, "--no-access-log", "--log-level", "warning"]
    todo_api = str(Path(sys.executable).parent / "todo-api")
    return [todo_api, "serve", *address, "--workers", str(args.workers)]


@contextmanager
def running_server(
    args: argparse.Namespace, env: dict[str, str], workdir: Path
) -> Iterator[Server]:
    log = RESULTS / f"server-{args.label}.log"
    command = ["taskset", "-c", args.server_cpus, *server_command(args)]
    with log.open("w") as log_file:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        server = Server(process, f"http://127.0.0.1:{args.port}", log)
        try:
            _wait_until_up(server, args.workers)
            yield server
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_until_up(server: Server, workers: int) -> None:
    import httpx

    deadline = time.monotonic() + 60
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


def run_wrk(
    args: argparse.Namespace, url: str, data: Path, connections: int, seconds: float
) -> Any:
    command = [
        "taskset",
        "-c",
        args.wrk_cpus,
        "wrk",
        "-t",
        str(args.wrk_threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds:g}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA_SCRIPT),
        url,
    ]
    completed = subprocess.run(
        command,
        env=os.environ | {"BENCH_DATA": str(data)},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"error: wrk failed:\n{completed.stdout}\n{completed.stderr}")
    return parse_wrk_output(completed.stdout)


@dataclass
class Bench:
    args: argparse.Namespace
    server: Server
    database: str
    db_url: str
    data: dict[str, Path]

    def measure(self, workload: str, connections: int, *, profile: str | None = None) -> Run:
        pids = self.server.all_pids
        backends = asyncio.run(backend_pids(self.db_url, self.database))
        server_before = cpu_seconds(pids)
        db_before = cpu_by_pid(backends)
        spy = self._start_profile(profile) if profile else None
        wrk = run_wrk(
            self.args, self.server.url, self.data[workload], connections, self.args.duration
        )
        server_cpu = cpu_seconds(pids) - server_before
        backends_after = asyncio.run(backend_pids(self.db_url, self.database))
        db_cpu = sum(
            seconds - db_before.get(pid, 0.0) for pid, seconds in cpu_by_pid(backends_after).items()
        )
        if spy is not None:
            spy.wait()
        return Run(wrk, server_cpu, db_cpu)

    def _start_profile(self, output: str) -> subprocess.Popen[bytes]:
        py_spy = ensure_py_spy()
        return subprocess.Popen(
            [
                "taskset",
                "-c",
                self.args.wrk_cpus,
                py_spy,
                "record",
                "--format",
                "raw",
                "--rate",
                "200",
                # Sampling without pausing the server, so the profile run stays a load run.
                "--nonblocking",
                "--duration",
                str(int(self.args.duration)),
                "--output",
                output,
                "--pid",
                str(self.server.worker_pids[0]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def warm_up(self, workload: str, connections: int) -> None:
        if self.args.warmup > 0:
            run_wrk(self.args, self.server.url, self.data[workload], connections, self.args.warmup)

    def rss(self) -> list[float]:
        return [round(peak_rss_mb(pid), 1) for pid in self.server.worker_pids]


def top_functions(collapsed: Path, count: int = 25) -> str:
    """The functions holding the most samples (own and inclusive) of a py-spy raw profile."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack:
            continue
        n = int(samples)
        # Frames without their line numbers, so a function counts once.
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        if any(frame.startswith("Thread._bootstrap ") for frame in frames):
            continue  # idle threads (anyio's thread pool), not request work
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
    lines = [f"{total} samples"]
    for title, table in (("own", own), ("inclusive", inclusive)):
        lines.append(f"-- top {count} by {title} time")
        for frame, n in sorted(table.items(), key=lambda item: -item[1])[:count]:
            lines.append(f"{100 * n / max(total, 1):5.1f}%  {frame}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per pair")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per pair (median)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--connections", default="16,64")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--auth", choices=("hs256", "eddsa"), default="hs256")
    parser.add_argument(
        "--server",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="PostgreSQL server to make the throwaway database on [env BENCH_POSTGRES_URL]",
    )
    parser.add_argument("--port", type=int, default=18300)
    parser.add_argument("--jwks-port", type=int, default=18301)
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list of the server")
    parser.add_argument("--wrk-cpus", default="1", help="taskset CPU list of wrk")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--log-level", default="INFO", help="the server's LOG_LEVEL")
    parser.add_argument(
        "--log-json", default="true", choices=("true", "false"), help="the server's LOG_JSON"
    )
    parser.add_argument(
        "--env", action="append", default=[], help="extra NAME=VALUE for the server"
    )
    parser.add_argument("--no-big-user", action="store_true", help="skip the 10,000-task check")
    parser.add_argument(
        "--reference",
        choices=("fastapi", "starlette"),
        help="serve get from a bare reference app (bench/reference.py) instead of the service",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy each workload's first run")
    parser.add_argument("--label", default=None, help="name of this run in bench/results/")
    parser.add_argument("--output", type=Path, default=None, help="JSON result file")
    args = parser.parse_args(argv)
    args.workloads = [w for w in args.workloads.split(",") if w]
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    args.connections = [int(c) for c in args.connections.split(",") if c]
    if args.reference:
        if args.workloads != ["get"] or args.workers != 1:
            parser.error("--reference serves only the get workload, from one process")
        args.no_big_user = True
    args.label = args.label or (
        f"reference-{args.reference}" if args.reference else f"{args.auth}-w{args.workers}"
    )
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("error: the benchmark needs two cores, one for the server and one for wrk")
    ensure_wrk()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    output = args.output or RESULTS / f"{stamp}-{args.label}.json"
    database = f"todo_bench_{uuid.uuid4().hex[:10]}"
    db_url = database_url(args.server, database)
    asyncio.run(create_database(args.server, database))
    try:
        with tempfile.TemporaryDirectory() as workdir, auth_mode(args.auth, args.jwks_port) as auth:
            return _bench(args, auth, database, db_url, Path(workdir), output)
    finally:
        asyncio.run(drop_database(args.server, database))


def _bench(
    args: argparse.Namespace, auth: Auth, database: str, db_url: str, workdir: Path, output: Path
) -> int:
    env = {k: v for k, v in os.environ.items() if k not in _SERVICE_VARIABLES} | {
        "ENVIRONMENT": "production",
        "DATABASE_URL": db_url,
        "LOG_LEVEL": args.log_level,
        "LOG_JSON": args.log_json,
        # A connection for each request a worker has in flight: one waiting for the pool is
        # both slower and more costly than one served (RESULTS.md, step 8).
        "DB_POOL_SIZE": str(-(-max(args.connections) // args.workers)),
        "DB_MAX_OVERFLOW": "0",
        # wrk sends each user's requests far faster than a person would, so measure without a
        # limit (--env RATE_LIMIT=1000000/minute, and REDIS_URL, measure one that never refuses).
        "RATE_LIMIT": "0",
        **auth.environment,
        **dict(item.split("=", 1) for item in args.env),
    }
    subprocess.run(
        [str(Path(sys.executable).parent / "todo-api"), "migrate"],
        cwd=workdir,
        env=env,
        check=True,
        capture_output=True,
    )
    started = time.monotonic()
    ids_by_user = asyncio.run(seed(db_url))
    last_seeded_id = max(max(ids) for ids in ids_by_user.values())
    users = sorted(user for user in ids_by_user if user != BIG_USER)
    print(
        f"Seeded {len(users)} users x {TASKS_PER_USER} tasks and one user with "
        f"{BIG_USER_TASKS} tasks in {time.monotonic() - started:.1f}s",
        flush=True,
    )
    tokens = {user: auth.token(user) for user in [*users, BIG_USER]}
    data: dict[str, Path] = {}
    for workload in [*WORKLOADS, "list-one"]:
        data[workload] = workdir / f"{workload}.lua"
        write_lua_data(
            data[workload], workload, [tokens[u] for u in users], [ids_by_user[u] for u in users]
        )
    for name, user in (("big", BIG_USER), ("small", users[0])):
        data[f"list-{name}"] = workdir / f"list-{name}.lua"
        write_lua_data(data[f"list-{name}"], "list-one", [tokens[user]], [ids_by_user[user]])

    served = f"reference app {args.reference}" if args.reference else "todo-api serve"
    print(
        f"Server: {served} --workers {args.workers}, pinned to CPU {args.server_cpus} "
        f"(taskset); wrk -t{args.wrk_threads} pinned to CPU {args.wrk_cpus}; "
        f"auth {args.auth}; LOG_LEVEL={args.log_level} LOG_JSON={args.log_json} "
        f"DB_POOL_SIZE={env['DB_POOL_SIZE']} DB_MAX_OVERFLOW={env['DB_MAX_OVERFLOW']} "
        f"RATE_LIMIT={env['RATE_LIMIT']}{' REDIS_URL set' if env.get('REDIS_URL') else ''}; "
        f"{args.runs} x {args.duration:g}s runs per row after {args.warmup:g}s warm-up",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    big_user: dict[str, Any] | None = None
    with running_server(args, env, workdir) as server:
        bench = Bench(args, server, database, db_url, data)
        for workload in args.workloads:
            for connections in args.connections:
                row = Row(workload, connections)
                bench.warm_up(workload, connections)
                for number in range(args.runs):
                    profile = None
                    if args.profile and number == 0 and connections == max(args.connections):
                        profile = str(RESULTS / f"profile-{args.label}-{workload}.txt")
                    row.runs.append(bench.measure(workload, connections, profile=profile))
                    if profile:
                        print(top_functions(Path(profile)), flush=True)
                    if workload in ("create", "mixed"):
                        asyncio.run(reset_writes(db_url, last_seeded_id))
                row.rss_mb = bench.rss()
                rows.append(row.summary())
                print(format_table(rows[-1:]).splitlines()[-1], flush=True)
        if not args.no_big_user:
            big_user = _big_user_check(bench)
        worker_rss = bench.rss()
    result = {
        "when": output.stem,
        "label": args.label,
        "setup": {
            "server": " ".join(server_command(args)),
            "server_cpus": args.server_cpus,
            "wrk_cpus": args.wrk_cpus,
            "wrk_threads": args.wrk_threads,
            "auth": args.auth,
            "log_level": args.log_level,
            "log_json": args.log_json,
            "rate_limit": env["RATE_LIMIT"],
            "duration_s": args.duration,
            "runs": args.runs,
            "warmup_s": args.warmup,
            "cpus": os.cpu_count(),
            "extra_env": args.env,
        },
        "rows": rows,
        "big_user": big_user,
        "peak_rss_mb_per_worker": worker_rss,
    }
    output.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(format_table(rows))
    if big_user:
        verdict = "met" if big_user["ratio"] < BIG_USER_FACTOR else "NOT met"
        print(
            f"\nFirst page, one connection: user with {BIG_USER_TASKS} tasks p50 "
            f"{big_user['big_p50_ms']:.2f} ms, user with {TASKS_PER_USER} tasks p50 "
            f"{big_user['small_p50_ms']:.2f} ms: ratio {big_user['ratio']:.2f} "
            f"({verdict}, target < {BIG_USER_FACTOR:g})"
        )
    print(f"Peak RSS per worker: {', '.join(f'{mb:.1f} MB' for mb in worker_rss)}")
    print(f"Results: {output}")
    invalid = [row for row in rows if not row["valid"]]
    if invalid or (big_user and big_user["errors"]):
        print("INVALID: some runs had errors (non-2xx or socket errors)")
        return 1
    return 0


def _big_user_check(bench: Bench) -> dict[str, Any]:
    """The first page of the 10,000-task user against a 50-task user's, one request at a time."""
    results = {}
    for name in ("small", "big"):
        run_wrk(bench.args, bench.server.url, bench.data[f"list-{name}"], 1, 1)
        runs = [
            run_wrk(bench.args, bench.server.url, bench.data[f"list-{name}"], 1, 3)
            for _ in range(bench.args.runs)
        ]
        results[name] = runs
    small = statistics.median(run["latency_us"]["p50"] for run in results["small"]) / 1000
    big = statistics.median(run["latency_us"]["p50"] for run in results["big"]) / 1000
    return {
        "small_p50_ms": round(small, 2),
        "big_p50_ms": round(big, 2),
        "ratio": round(big / small, 2),
        "errors": sum(error_count(run) for runs in results.values() for run in runs),
        "runs": results,
    }


if __name__ == "__main__":
    _reexec_in_venv()
    sys.exit(main(sys.argv[1:]))
