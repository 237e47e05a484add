"""segments: provisioned worker credentials, the credential that claimed each test and trigger, and
what a task instance may defer onto

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "worker_credential",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("queues", sa.JSON(), nullable=False),
        sa.Column("triggerer", sa.Boolean(), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
    )
    with op.batch_alter_table("connection_test") as batch:
        batch.add_column(sa.Column("credential", sa.String(63), nullable=True))
    with op.batch_alter_table("trigger") as batch:
        batch.add_column(sa.Column("credential", sa.String(63), nullable=True))
    # Existing task instances may defer onto nothing until an administrator allows it.
    with op.batch_alter_table("task_instance") as batch:
        batch.add_column(sa.Column("allowed_queues", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("allowed_connections", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("task_instance") as batch:
        batch.drop_column("allowed_connections")
        batch.drop_column("allowed_queues")
    with op.batch_alter_table("trigger") as batch:
        batch.drop_column("credential")
    with op.batch_alter_table("connection_test") as batch:
        batch.drop_column("credential")
    op.drop_table("worker_credential")
