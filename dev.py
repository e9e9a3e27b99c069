#!/usr/bin/env python3
"""Run the Tasks API from a fresh checkout with nothing but Python 3.11+.

    python3 dev.py serve        # make .venv, install, migrate, serve on http://127.0.0.1:8000
    python3 dev.py test         # lint, type-check and run every test
    python3 dev.py token alice  # any other todo-api command: token, migrate, ...
    python3 dev.py bench        # the benchmark (bench/run.py --help for its options)

The virtual environment is (re)installed only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed-from"


def main(argv: list[str]) -> int:
    ensure_environment()
    command, *rest = argv or ["serve"]
    if command == "test":
        return run_checks(rest)
    if command == "bench":
        return subprocess.call([str(BIN / "python"), str(ROOT / "bench" / "run.py"), *rest])
    os.chdir(ROOT)
    return subprocess.call([str(BIN / "todo-api"), command, *rest])


def ensure_environment() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and (BIN / "todo-api").exists():
        return
    if not (BIN / "python").exists():
        print("Creating the virtual environment in .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    print("Installing the service and its test tools into .venv ...", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.check_call([*pip, "--upgrade", "pip"])
    subprocess.check_call([*pip, "--editable", f"{ROOT}[dev]"])
    STAMP.write_text(wanted)


def run_checks(pytest_args: list[str]) -> int:
    steps = [
        ["ruff", "check", "src", "tests", "bench", "dev.py"],
        ["ruff", "format", "--check", "src", "tests", "bench", "dev.py"],
        ["mypy"],
        ["pytest", *pytest_args],
    ]
    for step in steps:
        print(f"\n$ {' '.join(step)}", flush=True)
        code = subprocess.call([str(BIN / step[0]), *step[1:]], cwd=ROOT)
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
