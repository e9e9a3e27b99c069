"""The .venv a benchmark script runs in, and the one of a checkout it is compared with."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness.config import ROOT


def reexec_in_venv(script: str) -> None:
    """Run inside the checkout's .venv (made by dev.py) whichever python started the script."""
    venv_python = ROOT / ".venv" / "bin" / "python"
    if Path(sys.prefix).resolve() == (ROOT / ".venv").resolve():
        return
    sys.path.insert(0, str(ROOT))
    import dev

    dev.ensure_environment()
    os.execv(str(venv_python), [str(venv_python), script, *sys.argv[1:]])  # noqa: S606


def todo_api_of(checkout: Path) -> Path:
    """The service of another checkout, installed in its .venv: made there by that checkout's
    own dev.py, which installs the dependencies of that commit."""
    todo_api = checkout / ".venv" / "bin" / "todo-api"
    if todo_api.exists():
        return todo_api
    if not (checkout / "dev.py").exists():
        raise SystemExit(f"error: {checkout} has no .venv/bin/todo-api and no dev.py to make it")
    print(f"Making {checkout}/.venv with its dev.py ...", flush=True)
    python = shutil.which("python3") or sys.executable
    subprocess.run(
        [python, str(checkout / "dev.py"), "--help"], check=True, stdout=subprocess.DEVNULL
    )
    if not todo_api.exists():
        raise SystemExit(f"error: {checkout}/dev.py did not install {todo_api}")
    return todo_api
