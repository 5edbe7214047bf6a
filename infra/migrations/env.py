"""Alembic environment: the database comes from GUANHUAI_DB_URL (or guanhuai's default), the
tables from guanhuai.schema. Runs on the async drivers guanhuai uses."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from shared.settings import Settings
from shared.events.database import create_engine
from guanhuai.schema import all_metadata

target_metadata = all_metadata()


def run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def main() -> None:
    engine = create_engine(Settings().database_url)
    async with engine.connect() as connection:
        await connection.run_sync(run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("guanhuai's migrations run against a database (online mode)")
asyncio.run(main())
