"""The database layer: connection strings, the engine, what runs the queries, fault triage."""

from todo_api.database.engine import PostgresConnection, create_engine, sqlite_file
from todo_api.database.faults import (
    DATABASE_ERRORS,
    DatabaseNotReady,
    DatabaseState,
    is_unavailable,
    misconfiguration,
)
from todo_api.database.runner import (
    Record,
    Row,
    StatementRunner,
    Transaction,
    TransactionRunner,
    create_runner,
)
from todo_api.database.url import parse_database_url, uses_transaction_pooler

__all__ = [
    "DATABASE_ERRORS",
    "DatabaseNotReady",
    "DatabaseState",
    "PostgresConnection",
    "Record",
    "Row",
    "StatementRunner",
    "Transaction",
    "TransactionRunner",
    "create_engine",
    "create_runner",
    "is_unavailable",
    "misconfiguration",
    "parse_database_url",
    "sqlite_file",
    "uses_transaction_pooler",
]
