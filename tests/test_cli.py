"""The `todo-api` command: start-up checks that say what to set, `migrate`, and `token`."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import jwt
import pytest

from tests.conftest import SECRET
from tests.server import run_cli, service_environment
from todo_api.migrations import alembic_config


def head_revision() -> str | None:
    """The newest revision among the migrations."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def one_clear_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_production_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    env = service_environment(ENVIRONMENT="production")
    result = run_cli("serve", cwd=tmp_path, env=env)
    assert result.returncode != 0
    assert "BETTER_AUTH_SECRET" in one_clear_line(result.stderr)
    assert not (tmp_path / ".todo-api").exists()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("not a url", "DATABASE_URL"),
        ("mysql://root@localhost/tasks", "not supported"),
        ("postgresql://user@/tasks", "host"),
        ("postgresql://user@db.example.com", "database name"),
    ],
)
def test_malformed_database_url_is_one_line(tmp_path: Path, url: str, fragment: str) -> None:
    env = service_environment(DATABASE_URL=url, BETTER_AUTH_SECRET=SECRET)
    result = run_cli("migrate", cwd=tmp_path, env=env)
    assert result.returncode != 0
    line = one_clear_line(result.stderr)
    assert fragment in line
    assert line.startswith("error: ")


@pytest.mark.parametrize("variable", ["PORT", "LOG_LEVEL", "CORS_ORIGINS"])
def test_invalid_setting_names_the_variable(tmp_path: Path, variable: str) -> None:
    value = {"PORT": "eighty", "LOG_LEVEL": "LOUD", "CORS_ORIGINS": "[not json"}[variable]
    env = service_environment(BETTER_AUTH_SECRET=SECRET, **{variable: value})
    result = run_cli("migrate", cwd=tmp_path, env=env)
    if variable == "CORS_ORIGINS":  # a plain comma-separated string is always usable
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2
    assert variable in one_clear_line(result.stderr)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_short_secret_gets_a_warning(tmp_path: Path) -> None:
    env = service_environment(BETTER_AUTH_SECRET="short")
    result = run_cli("token", "alice", cwd=tmp_path, env=env)
    assert result.returncode == 0
    assert "shorter than 32 bytes" in result.stderr
    assert jwt.decode(result.stdout.strip(), "short", algorithms=["HS256"])["sub"] == "alice"


def test_token_is_signed_with_the_configured_secret(tmp_path: Path) -> None:
    env = service_environment(BETTER_AUTH_SECRET=SECRET)
    result = run_cli("token", "user-7", "--expires-in", "120", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "user-7"
    assert claims["exp"] - claims["iat"] == 120
    assert not (tmp_path / ".todo-api").exists()  # a configured secret leaves no local file


def test_local_secret_is_made_once_and_private(tmp_path: Path) -> None:
    env = service_environment()
    first = run_cli("token", "alice", cwd=tmp_path, env=env)
    secret_file = tmp_path / ".todo-api" / "secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32
    second = run_cli("token", "bob", cwd=tmp_path, env=env)
    assert secret_file.read_text().strip() == secret
    for result, user in ((first, "alice"), (second, "bob")):
        assert jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])["sub"] == user


def test_migrate_creates_the_schema_and_is_idempotent(tmp_path: Path) -> None:
    database = tmp_path / "data" / "tasks.db"
    env = service_environment(DATABASE_URL=f"sqlite:///{database}", BETTER_AUTH_SECRET=SECRET)
    for _ in range(2):
        result = run_cli("migrate", cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as connection:
        indexes = {row[1] for row in connection.execute("PRAGMA index_list('tasks')")}
        version = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {
        "ix_tasks_user_id",
        "ix_tasks_user_id_created_at_id",
    } <= indexes
    assert version == [(head_revision(),)]


def test_unreachable_database_gives_up_with_one_line(tmp_path: Path) -> None:
    env = service_environment(
        DATABASE_URL="postgresql://postgres@127.0.0.1:9/test",
        BETTER_AUTH_SECRET=SECRET,
        DB_STARTUP_WAIT_SECONDS="1",
    )
    result = run_cli("migrate", cwd=tmp_path, env=env)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "DATABASE_URL" in errors[0]
    assert "Traceback" not in result.stderr
