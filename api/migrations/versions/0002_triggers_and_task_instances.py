"""triggers and task instances

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("capacity", sa.Integer(), nullable=True))
    op.create_table(
        "task_instance",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("dag_id", sa.String(length=250), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("task_id", sa.String(length=250), nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("next_method", sa.String(length=1000), nullable=True),
        sa.Column("next_kwargs", sa.Text(), nullable=True),
        sa.Column("trigger_id", sa.String(length=36), nullable=True),
        sa.Column("trigger_timeout", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dag_id", "run_id", "task_id", "map_index", name="uq_task_instance_key"),
    )
    with op.batch_alter_table("task_instance", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_instance_trigger_id"), ["trigger_id"], unique=False)

    op.create_table(
        "trigger",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("classpath", sa.String(length=1000), nullable=False),
        sa.Column("kwargs", sa.Text(), nullable=True),
        sa.Column("queue", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("task_instance_id", sa.String(length=36), nullable=True),
        sa.Column("event_type", sa.String(length=50), nullable=True),
        sa.Column("event_payload", sa.Text(), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("triggerer", sa.String(length=500), nullable=True),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("timeout_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("trigger", schema=None) as batch_op:
        batch_op.create_index("idx_trigger_state_created", ["state", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_trigger_task_instance_id"), ["task_instance_id"], unique=False)

    op.create_table(
        "trigger_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("trigger_id", sa.String(length=36), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("triggerer", sa.String(length=500), nullable=True),
        sa.Column("logged_at", TIMESTAMP, nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("trigger_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trigger_log_trigger_id"), ["trigger_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("capacity")
    with op.batch_alter_table("trigger_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trigger_log_trigger_id"))

    op.drop_table("trigger_log")
    with op.batch_alter_table("trigger", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trigger_task_instance_id"))
        batch_op.drop_index("idx_trigger_state_created")

    op.drop_table("trigger")
    with op.batch_alter_table("task_instance", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_instance_trigger_id"))

    op.drop_table("task_instance")
