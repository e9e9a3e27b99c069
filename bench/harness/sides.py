"""A checkout under test beside another (bench/compare.py, bench/instructions.py): its service,
options, throwaway database, seeded data and workload files."""

from __future__ import annotations

import argparse
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from harness.database import database_url
from harness.load import Bench
from harness.prepare import migrate, seed_database, server_environment, write_workload_data
from harness.tokens import Auth


@dataclass
class Side:
    """One checkout under test: its service, options, database, data files and bench."""

    name: str
    checkout: Path
    todo_api: Path
    args: argparse.Namespace  # the script's options, with this side's port and server log
    database: str = field(default_factory=lambda: f"todo_bench_{uuid.uuid4().hex[:10]}")
    env: dict[str, str] = field(default_factory=dict)
    folder: Path = Path()
    data: dict[str, Path] = field(default_factory=dict)
    last_seeded_id: int = 0
    bench: Bench | None = None

    @property
    def db_url(self) -> str:
        return database_url(self.args.server, self.database)

    def prepare(self, folder: Path, auth: Auth, pool: int) -> None:
        """Its database migrated by its own service, seeded, and the workloads' data files."""
        self.folder = folder
        folder.mkdir()
        self.env = server_environment(self.args, self.db_url, auth, pool)
        migrate(self.todo_api, self.env, folder)
        seeded = seed_database(self.db_url)
        print(f"{self.name}: {seeded.describe()}", flush=True)
        self.data = write_workload_data(folder, seeded, auth)
        self.last_seeded_id = seeded.last_id


def side_args(args: argparse.Namespace, name: str, port_offset: int) -> argparse.Namespace:
    """The options as the harness reads them for one side: its port, a server log of its own,
    and one worker of the service itself (what the comparison is about)."""
    port = args.port + port_offset
    own = {"port": port, "label": f"{args.label}-{name}", "workers": 1, "reference": None}
    return argparse.Namespace(**vars(args) | own)
