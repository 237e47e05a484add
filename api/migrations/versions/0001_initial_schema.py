"""initial schema

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# Microsecond precision on MySQL/MariaDB too: tests are dispatched in created_at order.
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connection",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("connection_id", sa.String(length=250), nullable=False),
        sa.Column("conn_type", sa.String(length=50), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("host", sa.String(length=500), nullable=True),
        sa.Column("schema", sa.String(length=500), nullable=True),
        sa.Column("login", sa.Text(), nullable=True),
        sa.Column("password", sa.Text(), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("extra", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("connection_id"),
    )
    op.create_table(
        "connection_test",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=250), nullable=True),
        sa.Column("active_connection_id", sa.String(length=250), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("result_message", sa.Text(), nullable=True),
        sa.Column("queue", sa.String(length=200), nullable=False),
        sa.Column("timeout", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=500), nullable=True),
        sa.Column("commit_on_success", sa.Boolean(), nullable=False),
        sa.Column("conn_type", sa.String(length=50), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("host", sa.String(length=500), nullable=True),
        sa.Column("schema", sa.String(length=500), nullable=True),
        sa.Column("login", sa.Text(), nullable=True),
        sa.Column("password", sa.Text(), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("extra", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("active_connection_id"),
    )
    with op.batch_alter_table("connection_test", schema=None) as batch_op:
        batch_op.create_index("idx_connection_test_state_created", ["state", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_connection_test_connection_id"), ["connection_id"], unique=False)

    op.create_table(
        "job",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("hostname", sa.String(length=500), nullable=False),
        sa.Column("credential", sa.String(length=250), nullable=False),
        sa.Column("queues", sa.JSON(), nullable=False),
        sa.Column("conn_types", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("latest_heartbeat", TIMESTAMP, nullable=False),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_state"), ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_state"))

    op.drop_table("job")
    with op.batch_alter_table("connection_test", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connection_test_connection_id"))
        batch_op.drop_index("idx_connection_test_state_created")

    op.drop_table("connection_test")
    op.drop_table("connection")
