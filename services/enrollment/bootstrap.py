"""Builds the enrollment service from settings (nothing connects at import time)."""

from __future__ import annotations

from faststream import FastStream

from shared.settings import Settings
from services.enrollment.handlers import EnrollmentHandler
from services.enrollment.tables import metadata
from shared.events.broker import ConsumerSpec
from shared.events.service import create_service_app
from shared.events.subjects import inbound_stream, inbound_subjects


def consumer_specs() -> list[ConsumerSpec]:
    return [ConsumerSpec(EnrollmentHandler(), inbound_stream("county"), (inbound_subjects("county"),))]


def create_app(settings: Settings) -> FastStream:
    app, _ = create_service_app("enrollment", settings.database_url, settings.nats_servers, consumer_specs(), [metadata], settings.nats_replicas,
                                nats_tls=settings.nats_tls_context())
    return app
