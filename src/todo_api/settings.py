"""Configuration: environment variables (and a `.env` file) read once into one object."""

from __future__ import annotations

import logging
import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import limits
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

logger = logging.getLogger(__name__)

STATE_DIR = Path(".todo-api")
"""Where local mode keeps its SQLite file and generated secret (git ignores it)."""

MIN_SECRET_BYTES = 32
BETTER_AUTH_JWKS_PATH = "/api/auth/jwks"


class ConfigError(Exception):
    """The configuration cannot work; the message says what to set."""


class Environment(StrEnum):
    LOCAL = "local"
    PRODUCTION = "production"


class Pooler(StrEnum):
    """What sits between the service and PostgreSQL, as far as prepared statements care."""

    AUTO = "auto"  # transaction mode when the host name says so (Neon: `-pooler`)
    NONE = "none"  # PostgreSQL itself, or a session-mode pooler
    TRANSACTION = "transaction"  # PgBouncer (or alike) in transaction mode


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    environment: Environment = Environment.LOCAL
    database_url: str = f"sqlite+aiosqlite:///{STATE_DIR}/tasks.db"

    better_auth_secret: str | None = None
    better_auth_url: str | None = None
    better_auth_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=600)
    jwks_fetch_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    jwks_refetch_interval_seconds: float = Field(default=10.0, ge=0)
    jwks_max_age_seconds: float = Field(default=300.0, gt=0)
    token_cache_size: int = Field(default=4096, ge=0)

    cors_origins: Annotated[list[str], NoDecode] = ["http://localhost:3000"]

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # One process per core: a worker is one event loop, and Python runs it on one core.
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    log_level: str = "INFO"
    log_json: bool = False

    # On PostgreSQL a worker opens up to size + overflow connections as requests need them and
    # closes those idle for the recycle time. Size it to the requests a worker has in flight
    # (more wait their turn, first come first served), within the database's budget of
    # replicas x workers x (size + overflow) connections.
    db_pool_size: int = Field(default=20, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0)
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    db_statement_timeout_seconds: float = Field(default=5.0, gt=0)
    db_startup_wait_seconds: float = Field(default=30.0, ge=0)
    db_pool_recycle_seconds: float = Field(default=300.0, gt=0)
    db_pooler: Pooler = Pooler.AUTO

    max_body_bytes: int = Field(default=1024 * 1024, ge=1)

    # Requests per caller (the token's user, or the client address without a valid token), in
    # the `limits` library's notation ("600/minute", "100 per 10 seconds"); "0" turns it off.
    rate_limit: str = "600/minute"
    # Where the budgets are counted when every process and replica must share them.
    redis_url: str | None = None
    redis_key_prefix: str = Field(default="todo-api", min_length=1)
    # Live updates and reminders (docs/sync.md). Behind a transaction-mode pooler, LISTEN needs
    # a direct connection: DB_LISTEN_URL (Neon's is derived from DATABASE_URL); without one,
    # open streams are served by polling every stream_poll_seconds.
    db_listen_url: str | None = None
    stream_poll_seconds: float = Field(default=0.25, gt=0, le=5)
    stream_keepalive_seconds: float = Field(default=15.0, gt=0)
    streams_per_user: int = Field(default=10, ge=1)
    reminder_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    # Deletions stay in the change feed at least this long (the contract's minimum is 30 days).
    feed_tombstone_days: float = Field(default=30.0, ge=30)
    maintenance_interval_seconds: float = Field(default=600.0, gt=0)
    # For tests only: after an idempotent write commits, wait this long before answering, so
    # that a test can kill the process between the two. Leave it at 0.
    test_pause_after_idempotent_write_seconds: float = Field(default=0.0, ge=0)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {value!r}; use DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("better_auth_url", "better_auth_jwks_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip().lower().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return None if value is None else value.strip()

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        value = value.strip()
        if value != "0":
            _parse_rate(value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
        return value

    @property
    def rate_limit_item(self) -> limits.RateLimitItem | None:
        """The budget each caller has; None when limiting is off."""
        return None if self.rate_limit == "0" else _parse_rate(self.rate_limit)

    @property
    def jwks_url(self) -> str | None:
        """Where Better Auth's JWT plugin publishes its public keys; None: JWKS mode is off."""
        if self.better_auth_jwks_url is not None:
            return self.better_auth_jwks_url
        if self.better_auth_url is not None:
            return self.better_auth_url.rstrip("/") + BETTER_AUTH_JWKS_PATH
        return None

    @property
    def better_auth_base_url(self) -> str | None:
        """Better Auth's base URL, which its JWT plugin puts in `iss` and `aud` by default."""
        if self.better_auth_url is not None:
            return self.better_auth_url
        jwks = self.better_auth_jwks_url
        if jwks is not None and jwks.rstrip("/").endswith(BETTER_AUTH_JWKS_PATH):
            return jwks.rstrip("/").removesuffix(BETTER_AUTH_JWKS_PATH)
        return None

    @field_validator(
        "better_auth_secret",
        "better_auth_url",
        "better_auth_jwks_url",
        "jwt_issuer",
        "jwt_audience",
        "redis_url",
        "db_listen_url",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value


def _parse_rate(value: str) -> limits.RateLimitItem:
    try:
        items = limits.parse_many(value)
    except ValueError:
        items = []
    if len(items) != 1 or items[0].amount < 1:
        raise ValueError(
            f"{value!r} is not one rate; use a number of requests per period such as "
            "600/minute or 100 per 10 seconds, or 0 for no limit"
        )
    return items[0]


def load_settings(**overrides: Any) -> Settings:
    """Read the settings and make them usable, or raise ConfigError saying what to set.

    In local mode a missing `BETTER_AUTH_SECRET` is replaced by a random secret kept in
    `.todo-api/secret`, so `serve` and `token` agree without any configuration.
    """
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    if settings.better_auth_secret is None and settings.environment is Environment.LOCAL:
        settings = settings.model_copy(update={"better_auth_secret": local_secret(STATE_DIR)})
    check_auth_configured(settings)
    return settings


def check_auth_configured(settings: Settings) -> None:
    if settings.better_auth_secret is None and settings.jwks_url is None:
        raise ConfigError(
            "No way to verify tokens: set BETTER_AUTH_URL (tokens from Better Auth's JWT plugin, "
            "checked with its JWKS) or BETTER_AUTH_SECRET (HS256 tokens signed with a shared "
            "secret), or both."
        )
    if settings.jwks_url is not None and settings.better_auth_base_url is None:
        missing = [
            name
            for name, value in (
                ("JWT_ISSUER", settings.jwt_issuer),
                ("JWT_AUDIENCE", settings.jwt_audience),
            )
            if value is None
        ]
        if missing:
            raise ConfigError(
                "BETTER_AUTH_JWKS_URL does not end in /api/auth/jwks, so the expected token "
                f"issuer and audience are unknown: set BETTER_AUTH_URL or {' and '.join(missing)}."
            )
    if (
        settings.better_auth_secret is not None
        and len(settings.better_auth_secret.encode()) < MIN_SECRET_BYTES
    ):
        logger.warning(
            "BETTER_AUTH_SECRET is shorter than %d bytes; use a longer random secret "
            "(for example: openssl rand -base64 32).",
            MIN_SECRET_BYTES,
        )


def local_secret(state_dir: Path) -> str:
    """The secret of this checkout's local mode, made once and readable by its owner only."""
    path = state_dir / "secret"
    if path.exists():
        return path.read_text().strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    try:
        with open(path, "x", opener=_open_private) as file:
            file.write(secret + "\n")
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text().strip()
    return secret


def _open_private(name: str, flags: int) -> int:
    return os.open(name, flags, 0o600)


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"]).upper()
        problems.append(f"{name}: {error['msg']}")
    return "Invalid configuration: " + "; ".join(problems)
