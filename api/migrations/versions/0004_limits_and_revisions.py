"""limits: connection revisions for commit_on_success, LONGTEXT on MySQL/MariaDB, log-line counts, and
the indexes caps and retention query by

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Columns whose largest accepted value exceeds the 64 KiB of a MySQL TEXT (frozen here).
LONG_COLUMNS = {
    "connection": ("extra",),
    "connection_test": ("extra",),
    "trigger": ("kwargs", "event_payload", "failure"),
    "task_instance": ("next_kwargs",),
}
ACTIVE_TEST_STATES = ("pending", "queued", "running")

connection = sa.table(
    "connection",
    sa.column("id", sa.Integer),
    sa.column("connection_id", sa.String),
    sa.column("revision", sa.String),
)
connection_test = sa.table(
    "connection_test",
    sa.column("connection_id", sa.String),
    sa.column("connection_revision", sa.String),
    sa.column("state", sa.String),
)
trigger = sa.table("trigger", sa.column("id", sa.String), sa.column("log_lines", sa.Integer))
trigger_log = sa.table("trigger_log", sa.column("trigger_id", sa.String))


def _on_mysql() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def upgrade() -> None:
    if _on_mysql():
        for table, columns in LONG_COLUMNS.items():
            for column in columns:
                op.alter_column(table, column, type_=mysql.LONGTEXT(), existing_type=sa.Text())

    with op.batch_alter_table("connection") as batch_op:
        batch_op.add_column(sa.Column("revision", sa.String(length=36), nullable=True))
    bind = op.get_bind()
    for (row_id,) in bind.execute(sa.select(connection.c.id)).all():
        bind.execute(connection.update().where(connection.c.id == row_id).values(revision=str(uuid.uuid4())))
    with op.batch_alter_table("connection") as batch_op:
        batch_op.alter_column("revision", existing_type=sa.String(length=36), nullable=False)

    with op.batch_alter_table("connection_test") as batch_op:
        batch_op.add_column(sa.Column("connection_revision", sa.String(length=36), nullable=True))
        batch_op.create_index("idx_connection_test_queue_state", ["queue", "state"], unique=False)
        batch_op.create_index("idx_connection_test_finished", ["finished_at"], unique=False)
    # Tests in flight across the upgrade started from the connection as it is now.
    current = (
        sa.select(connection.c.revision)
        .where(connection.c.connection_id == connection_test.c.connection_id)
        .scalar_subquery()
    )
    op.execute(
        connection_test.update()
        .where(connection_test.c.state.in_(ACTIVE_TEST_STATES))
        .values(connection_revision=current)
    )

    with op.batch_alter_table("trigger") as batch_op:
        batch_op.add_column(sa.Column("log_lines", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index("idx_trigger_queue_state", ["queue", "state"], unique=False)
        batch_op.create_index("idx_trigger_finished", ["finished_at"], unique=False)
    counted = (
        sa.select(sa.func.count())
        .select_from(trigger_log)
        .where(trigger_log.c.trigger_id == trigger.c.id)
        .scalar_subquery()
    )
    op.execute(trigger.update().values(log_lines=counted))

    with op.batch_alter_table("trigger_log") as batch_op:
        batch_op.drop_index("ix_trigger_log_trigger_id")
        batch_op.create_index("idx_trigger_log_trigger_line", ["trigger_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("trigger_log") as batch_op:
        batch_op.drop_index("idx_trigger_log_trigger_line")
        batch_op.create_index("ix_trigger_log_trigger_id", ["trigger_id"], unique=False)
    with op.batch_alter_table("trigger") as batch_op:
        batch_op.drop_index("idx_trigger_finished")
        batch_op.drop_index("idx_trigger_queue_state")
        batch_op.drop_column("log_lines")
    with op.batch_alter_table("connection_test") as batch_op:
        batch_op.drop_index("idx_connection_test_finished")
        batch_op.drop_index("idx_connection_test_queue_state")
        batch_op.drop_column("connection_revision")
    with op.batch_alter_table("connection") as batch_op:
        batch_op.drop_column("revision")
    if _on_mysql():
        # Values longer than a TEXT holds would be refused here: shorten or delete them first.
        for table, columns in LONG_COLUMNS.items():
            for column in columns:
                op.alter_column(table, column, type_=sa.Text(), existing_type=mysql.LONGTEXT())
