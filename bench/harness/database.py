"""The throwaway benchmark database: made, seeded, reset, dropped."""

from __future__ import annotations

from typing import Any

from harness.config import BIG_USER, BIG_USER_TASKS, SEARCH_WORD, TASKS_PER_USER, USERS


def database_url(server_url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(server_url).set(drivername="postgresql", database=name)
    return url.render_as_string(hide_password=False)


async def connect(url: str) -> Any:
    import asyncpg

    return await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))


async def create_database(server_url: str, name: str) -> None:
    connection = await connect(server_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def drop_database(server_url: str, name: str) -> None:
    connection = await connect(server_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


# Tasks as a frontend's users keep them: every priority, due dates on 70 % (past and future),
# up to two of eight tags, a description on half, and SEARCH_WORD in about 1 % of them. The
# folded title and search text are what the service would write (the text is ASCII: lower()
# is str.casefold here). Only the columns the migrated schema has are written, so the same
# harness seeds a checkout from before a feature (bench/RESULTS.md compares with those).
SEEDED = """
SELECT users.user_id,
       'Task ' || n AS title,
       CASE WHEN n % 100 = 7 THEN 'Details with {search_word} in them ' || n
            WHEN n % 2 = 0 THEN 'Details of task ' || n END AS description,
       n % 3 = 0 AS completed,
       now() - make_interval(secs => users.size - n) AS created_at,
       now() - make_interval(secs => users.size - n) AS updated_at,
       1 + (n * 7) % 3 AS priority,
       CASE WHEN n % 10 < 7
            THEN now() + make_interval(hours => (n * 37) % 2000 - 500) END AS due_at,
       lower('Task ' || n) AS title_key
FROM (
    SELECT 'bench-user-' || lpad(u::text, 3, '0') AS user_id, $1::int AS size
    FROM generate_series(0, $2::int - 1) AS u
    UNION ALL SELECT $3::text, $4::int
) AS users
CROSS JOIN LATERAL generate_series(1, users.size) AS n
"""
SEARCH_TEXT = "lower(title || coalesce(E'\\n' || description, ''))"
TAG_NAMES = "ARRAY['work', 'home', 'errand', 'health', 'finance', 'family', 'study', 'garden']"
# Up to two tags a task, in the columns of the tag rows that carry their task's values.
TAG_ROWS = """
INSERT INTO task_tags ({columns})
SELECT DISTINCT {values}
FROM tasks
CROSS JOIN LATERAL (
    VALUES (CASE WHEN tasks.id % 5 <> 0 THEN tasks.id % 8 + 1 END),
           (CASE WHEN tasks.id % 2 = 0 THEN tasks.id / 8 % 8 + 1 END)
) AS slot(k)
WHERE k IS NOT NULL
"""
TAGS_OF_TASKS = """
UPDATE tasks SET tags = carried.tags
FROM (SELECT task_id, string_agg(tag, ',' ORDER BY tag) AS tags
      FROM task_tags GROUP BY task_id) AS carried
WHERE tasks.id = carried.task_id
"""
SEED_COLUMNS = (
    "user_id",
    "title",
    "description",
    "completed",
    "created_at",
    "updated_at",
    "priority",
    "due_at",
    "title_key",
)
TAG_CARRIED = ("priority", "due_at", "created_at")


async def _columns(connection: Any, table: str) -> set[str]:
    rows = await connection.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = $1", table
    )
    return {row["column_name"] for row in rows}


async def _seed_tasks(connection: Any) -> None:
    present = await _columns(connection, "tasks")
    columns = [name for name in SEED_COLUMNS if name in present]
    values = list(columns)
    if "search_text" in present:
        columns.append("search_text")
        values.append(SEARCH_TEXT)
    # Every name and expression comes from this module; the values are bound parameters.
    insert = f"INSERT INTO tasks ({', '.join(columns)}) SELECT {', '.join(values)} FROM "  # noqa: S608
    await connection.execute(
        insert + f"({SEEDED.format(search_word=SEARCH_WORD)}) AS seeded",
        TASKS_PER_USER,
        USERS,
        BIG_USER,
        BIG_USER_TASKS,
    )
    tag_columns = await _columns(connection, "task_tags")
    if not tag_columns:
        return  # a schema from before tags
    carried = [name for name in TAG_CARRIED if name in tag_columns]
    columns = ["task_id", "user_id", "tag", *carried]
    values = ["tasks.id", "tasks.user_id", f"({TAG_NAMES})[k]", *(f"tasks.{c}" for c in carried)]
    await connection.execute(TAG_ROWS.format(columns=", ".join(columns), values=", ".join(values)))
    await connection.execute(TAGS_OF_TASKS)


async def seed(url: str) -> dict[str, list[int]]:
    """100 users x 50 tasks and one user with 10,000, with tags; their task ids."""
    connection = await connect(url)
    try:
        await _seed_tasks(connection)
        await connection.execute("VACUUM ANALYZE")
        rows = await connection.fetch(
            "SELECT user_id, array_agg(id ORDER BY id) AS ids FROM tasks GROUP BY user_id"
        )
    finally:
        await connection.close()
    return {row["user_id"]: list(row["ids"]) for row in rows}


async def reset_writes(url: str, last_seeded_id: int) -> None:
    """Remove what create workloads added, so every workload sees the seeded data."""
    connection = await connect(url)
    try:
        await connection.execute("DELETE FROM tasks WHERE id > $1", last_seeded_id)
        await connection.execute("VACUUM ANALYZE tasks")
    finally:
        await connection.close()


async def backend_pids(url: str, database: str) -> list[int]:
    connection = await connect(url)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await connection.close()
    return [row["pid"] for row in rows]


async def free_connections(server_url: str) -> int:
    """How many more connections the PostgreSQL server takes: max_connections less those open."""
    connection = await connect(server_url)
    try:
        free: int = await connection.fetchval(
            "SELECT current_setting('max_connections')::int - count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend'"
        )
    finally:
        await connection.close()
    return free
