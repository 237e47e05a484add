from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from api.db.models import Base
from api.db.session import sync_url

config = context.config
url: str = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url") or ""
if not url:
    from api.core.config import Settings

    url = Settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=sync_url(url), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
