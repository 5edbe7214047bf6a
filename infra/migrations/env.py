"""Alembic environment: the database comes from GUANHUAI_DB_URL (or guanhuai's default), the
tables from guanhuai.schema. Runs on the synchronous engine guanhuai uses (``sqlite3`` /
``psycopg`` 3)."""

from __future__ import annotations

from alembic import context

from shared.settings import Settings
from shared.events.database import create_engine, write_connection
from guanhuai.schema import all_metadata

target_metadata = all_metadata()


def main() -> None:
    engine = create_engine(Settings().database_url)
    try:
        with write_connection(engine) as connection:
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("guanhuai's migrations run against a database (online mode)")
main()
