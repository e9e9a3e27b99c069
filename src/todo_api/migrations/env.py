"""Alembic environment: runs on the connection `todo_api.migrations.upgrade` hands over."""

from alembic import context

from todo_api.schema import is_declared, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `todo-api migrate`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_object=is_declared,
)
with context.begin_transaction():
    context.run_migrations()
