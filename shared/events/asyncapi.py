"""The AsyncAPI document of guanhuai's messages, generated from the code: the subjects in
:mod:`.subjects` and the event models in the registry (via FastStream's AsyncAPI generator)."""

from __future__ import annotations

from typing import Any

from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from pydantic import create_model

from . import registry
from .base import RecordedEvent, SentMessage
from .subjects import PRODUCER_EVENTS, event_subject, inbound_subject

DESCRIPTION = """Messages of guanhuai (关怀), the system of record for the family-planning household accident
insurance programme. County and insurer systems publish to `guanhuai.in.<kind>.<EventType>` (JetStream
streams GUANHUAI_IN_COUNTY and GUANHUAI_IN_INSURER, one per producer kind) with the event id as the
`Nats-Msg-Id` header; the log records such an event under uuid5(f391b93e-dcc1-5c7f-8009-a50a7cd6a420,
"<kind>/<event id>"). Every event the system records is
published, after it is committed, to `guanhuai.events.<EventType>` (stream GUANHUAI_EVENTS), in log
order, with its log position. Money is integer fen; timestamps are timezone-aware."""


def build_asyncapi(version: str = "1") -> dict[str, Any]:
    broker = NatsBroker("nats://localhost:4222")  # never connected: only described
    for kind, types in PRODUCER_EVENTS.items():
        for event_type in types:
            payload = registry.payload_class(event_type)
            model = create_model(f"{event_type}Message", __base__=SentMessage, payload=(payload, ...))
            broker.publisher(inbound_subject(kind, event_type), title=f"{kind}:{event_type}",
                             description=f"A {kind} system sends {event_type}. " + (payload.__doc__ or "").strip(),
                             schema=model)
    for event_type, payload in sorted(registry.types.items()):
        model = create_model(f"Recorded{event_type}Message", __base__=RecordedEvent, payload=(payload, ...))
        broker.publisher(event_subject(event_type), title=f"recorded:{event_type}",
                         description=f"{event_type} as recorded in the log. " + (payload.__doc__ or "").strip(),
                         schema=model)
    spec = AsyncAPI(broker, title="guanhuai events", version=version, description=DESCRIPTION)
    return spec.to_specification().to_jsonable()  # type: ignore[no-any-return]
