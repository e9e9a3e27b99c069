"""Fewer index entries for every write of a task.

Each insert of a task, and each update that changes an indexed column (a completion changes
`completed` and `updated_at`), adds an entry to every index on `tasks`.

- `ix_tasks_user_id_completed` is dropped: the status filter's totals come from `task_counts`,
  and a page of a status-filtered list is read along the order's own index (docs/api.md,
  "Listing"). `ix_tasks_user_id` stays: the narrowest index on the user, it is the one a
  search combines with the trigram index.
- `uq_tasks_previous_id` holds an entry only for next occurrences of recurring tasks (the only
  rows with a `previous_id`), where it held one for every task.

Every row is kept; the downgrade builds the indexes again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PREVIOUS_ID_SET = sa.text("previous_id IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_tasks_user_id_completed", "tasks")
    op.drop_index("uq_tasks_previous_id", "tasks")
    op.create_index(
        "uq_tasks_previous_id",
        "tasks",
        ["previous_id"],
        unique=True,
        postgresql_where=PREVIOUS_ID_SET,
        sqlite_where=PREVIOUS_ID_SET,
    )


def downgrade() -> None:
    op.drop_index("uq_tasks_previous_id", "tasks")
    op.create_index("uq_tasks_previous_id", "tasks", ["previous_id"], unique=True)
    op.create_index("ix_tasks_user_id_completed", "tasks", ["user_id", "completed"])
