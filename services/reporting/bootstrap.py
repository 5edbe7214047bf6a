"""Builds the reporting service from settings (nothing connects at import time)."""

from __future__ import annotations

from faststream import FastStream

from shared.settings import Settings
from services.reporting.handlers import CONSUMES, ReportingHandler
from services.reporting.tables import metadata
from shared.events.broker import ConsumerSpec
from shared.events.service import create_service_app
from shared.events.subjects import EVENTS_STREAM


def create_app(settings: Settings) -> FastStream:
    def specs(store):  # type: ignore[no-untyped-def]
        return [ConsumerSpec(ReportingHandler(store), EVENTS_STREAM, CONSUMES, batch_size=1000)]

    app, _ = create_service_app("reporting", settings.database_url, settings.nats_servers, specs, [metadata],
                                settings.nats_replicas, nats_tls=settings.nats_tls_context())
    return app
