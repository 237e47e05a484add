"""connection-test slots in the database: the lock row the grants take turns on

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table("connection_test_slot_lock", sa.Column("id", sa.Integer(), primary_key=True))
    op.bulk_insert(table, [{"id": 1}])


def downgrade() -> None:
    op.drop_table("connection_test_slot_lock")
