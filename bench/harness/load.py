"""The load: wrk, its per-workload data files, and one measured run."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import LUA_SCRIPT
from harness.database import backend_pids
from harness.report import Run, cpu_by_pid, cpu_seconds, parse_wrk_output, peak_rss_mb
from harness.server import Server


def ensure_wrk() -> str:
    return ensure_debian_package("wrk", "wrk")


def ensure_debian_package(command: str, package: str) -> str:
    """The path of `command`, installed from the distribution's `package` if it is missing."""
    found = shutil.which(command)
    if found:
        return found
    print(f"Installing {package} from the distribution's packages ...", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.check_call([*sudo, "apt-get", "update", "-qq"])
    subprocess.check_call([*sudo, "apt-get", "install", "-y", "-qq", package])
    found = shutil.which(command)
    if not found:
        raise SystemExit(f"error: {command} is not installed and could not be installed")
    return found


def ensure_py_spy() -> str:
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        print("Installing py-spy into .venv ...", flush=True)
        subprocess.check_call(
            [sys.executable, "-m", "pip", "install", "--quiet", "py-spy>=0.4,<1"],
        )
    return str(py_spy)


def write_lua_data(
    path: Path, workload: str, tokens: list[str], ids: list[list[int]], query: str = ""
) -> None:
    """The data one wrk run reads: its workload, the users' tokens and task ids, and the list
    query string of the search, filter and sort workloads."""
    token_list = ",\n".join(f'  "{token}"' for token in tokens)
    id_list = ",\n".join("  {" + ", ".join(map(str, user_ids)) + "}" for user_ids in ids)
    path.write_text(
        f'return {{\nworkload = "{workload}",\nquery = "{query}",\n'
        f"tokens = {{\n{token_list}\n}},\nids = {{\n{id_list}\n}}\n}}\n"
    )


def run_wrk(
    args: argparse.Namespace,
    url: str,
    data: Path,
    connections: int,
    seconds: float,
    *,
    timeout_seconds: float = 5,
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
        f"{timeout_seconds:g}s",
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
