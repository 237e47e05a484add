"""stable trigger classpaths: stored triggers name Airlock's own triggers as airlock.triggers.<Class>

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen here: what the code calls these classes may change again, this migration may not.
RENAMED = {
    "activities.triggers.time.DateTimeTrigger": "airlock.triggers.DateTimeTrigger",
    "activities.triggers.time.TimeDeltaTrigger": "airlock.triggers.TimeDeltaTrigger",
    "activities.triggers.file.FileTrigger": "airlock.triggers.FileTrigger",
    "activities.triggers.http.HttpTrigger": "airlock.triggers.HttpTrigger",
    "activities.triggers.sql.SqlTrigger": "airlock.triggers.SqlTrigger",
}

trigger = sa.table("trigger", sa.column("classpath", sa.String))


def _rename(mapping: dict[str, str]) -> None:
    for old, new in mapping.items():
        op.execute(trigger.update().where(trigger.c.classpath == old).values(classpath=new))


def upgrade() -> None:
    _rename(RENAMED)


def downgrade() -> None:
    _rename({new: old for old, new in RENAMED.items()})
