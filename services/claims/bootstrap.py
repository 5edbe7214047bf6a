"""Builds the claims service from settings (nothing connects at import time)."""

from __future__ import annotations

from faststream import FastStream

from shared.settings import Settings
from services.claims.handlers import CONSUMES, ClaimsHandler, ClaimsIntakeHandler
from services.claims.tables import metadata
from shared.events.broker import ConsumerSpec
from shared.events.service import create_service_app
from shared.events.subjects import EVENTS_STREAM, event_subject, inbound_stream, inbound_subjects


def consumer_specs() -> list[ConsumerSpec]:
    return [
        ConsumerSpec(ClaimsIntakeHandler(), inbound_stream("insurer"), (inbound_subjects("insurer"),)),
        ConsumerSpec(ClaimsHandler(), EVENTS_STREAM, tuple(event_subject(t) for t in CONSUMES)),
    ]


def create_app(settings: Settings) -> FastStream:
    app, _ = create_service_app("claims", settings.database_url, settings.nats_servers, consumer_specs(), [metadata], settings.nats_replicas,
                                nats_tls=settings.nats_tls_context())
    return app
