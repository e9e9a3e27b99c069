"""What the benchmark runs: paths, workloads, data sizes, targets."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # bench/harness/config.py -> the checkout
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
LUA_SCRIPT = BENCH / "workload.lua"

# The list with search, filters and sorting, as a frontend calls it; each also for the user with
# 10,000 tasks alone (the "-big" workloads).
LIST_QUERIES = {
    "search": "q=zephyr",  # the seeded word, in about 1 % of the tasks
    "filter": "tag=work&priority=high,medium&sort=due_at",
    "sort": "sort=-priority",
}
SEARCH_WORD = "zephyr"
WORKLOADS = (
    *("list", "get", "create", "toggle", "mixed"),
    *LIST_QUERIES,
    *(f"{name}-big" for name in LIST_QUERIES),
    # Writes that show what versions, idempotency keys and the change feed cost
    # (harness/sync_workloads.py): a PUT of a new title, and create/toggle with a fresh key each.
    *("update", "create-idem", "toggle-idem"),
)
# Run only when named in --workloads: an MCP tools/call of list_tasks or add_task, one POST each.
MCP_WORKLOADS = ("mcp-list", "mcp-add")
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
# Targets at 16 connections, one worker: p99 ms at most.
P99_TARGETS_AT_16 = {name: 50.0 for name in WORKLOADS if name.split("-")[0] in LIST_QUERIES}
STALL_FACTOR = 5.0  # p99 must stay under this many times p50
RSS_LIMIT_MB = 100.0
# The 10,000-task user's request, one at a time, at most this many times a 50-task user's.
BIG_USER_FACTORS = {"list": 2.0, "search": 3.0, "filter": 3.0, "sort": 3.0}

# Settings the service reads; the server starts from none of the caller's.
SERVICE_VARIABLES = (
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
