"""connection_test.queued_at: when a test got its slot, for the per-stage durations of /metrics

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# As 0001's timestamps: microseconds on MySQL/MariaDB too.
TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no backfill: a test queued before the upgrade has no waiting stages to measure.
    op.add_column("connection_test", sa.Column("queued_at", TIMESTAMP, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connection_test") as batch:
        batch.drop_column("queued_at")
