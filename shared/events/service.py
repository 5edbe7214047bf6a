"""What every consuming service's bootstrap does: one store, its tables, its consumers."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence

from faststream import FastStream
from sqlalchemy import MetaData

from .broker import ConsumerSpec, build_app
from .database import SERVICE_SQLITE_CACHE_KIB, SERVICE_SQLITE_CHECKPOINT_BYTES, create_engine
from .inbox import metadata as inbox_metadata
from .store import EventStore


def create_service_app(
    name: str,
    db_url: str,
    nats_servers: Sequence[str],
    specs: Sequence[ConsumerSpec] | Callable[[EventStore], Sequence[ConsumerSpec]],
    tables: Sequence[MetaData],
    replicas: int = 1,
    nats_tls: ssl.SSLContext | None = None,
) -> tuple[FastStream, EventStore]:
    """Build (without connecting) a service's FastStream app; it creates its tables on start-up
    and closes its database on shutdown. ``specs`` may be a function of the store, for handlers
    that read it. ``nats_tls``: the settings' NATS TLS context (None: plain text)."""
    store = EventStore(create_engine(db_url, sqlite_cache_kib=SERVICE_SQLITE_CACHE_KIB,
                                      sqlite_checkpoint_bytes=SERVICE_SQLITE_CHECKPOINT_BYTES))
    app, _broker = build_app(nats_servers, store, specs(store) if callable(specs) else specs, name=name, replicas=replicas,
                             tls=nats_tls)

    @app.on_startup
    async def create_tables() -> None:
        await store.create_schema(inbox_metadata, *tables)

    @app.after_shutdown
    async def close_store() -> None:
        await store.close()

    return app, store
