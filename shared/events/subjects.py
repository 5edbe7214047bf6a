"""NATS subjects and JetStream streams: the documented way in and out of guanhuai.

Inbound (county and insurer systems publish here; one stream, ``GUANHUAI_IN``):
    guanhuai.in.<producer kind>.<EventType>     e.g. guanhuai.in.county.HouseholdRegistered

Recorded (every event of the log, published in log order after it is committed; ``GUANHUAI_EVENTS``):
    guanhuai.events.<EventType>                 e.g. guanhuai.events.PolicyIssued

Every message carries its event id as the ``Nats-Msg-Id`` header (JetStream de-duplication).
"""

from __future__ import annotations

INBOUND_STREAM = "GUANHUAI_IN"
INBOUND_PREFIX = "guanhuai.in"
EVENTS_STREAM = "GUANHUAI_EVENTS"
EVENTS_PREFIX = "guanhuai.events"
MAX_MESSAGE_BYTES = 256 * 1024  # a household of 30 members is ~5 KB; anything near this is abuse

# What each kind of producer may send. The service that records a kind's inbound events:
#   county  -> enrollment (households, targets, areas, subsidy plans and their closing)
#   insurer -> claims (claims reported)
PRODUCER_EVENTS: dict[str, tuple[str, ...]] = {
    "county": (
        "HouseholdRegistered",
        "TownshipTargetSet",
        "AreaRegistered",
        "SubsidyPlanPublished",
        "SubsidyPlanCloseRequested",
    ),
    "insurer": ("ClaimReported",),
}


def inbound_subject(kind: str, event_type: str) -> str:
    if event_type not in PRODUCER_EVENTS.get(kind, ()):
        raise ValueError(f"a {kind} system does not send {event_type}")
    return f"{INBOUND_PREFIX}.{kind}.{event_type}"


def event_subject(event_type: str) -> str:
    return f"{EVENTS_PREFIX}.{event_type}"


def split_inbound(subject: str) -> tuple[str, str] | None:
    """``guanhuai.in.county.HouseholdRegistered`` -> ``("county", "HouseholdRegistered")``."""
    parts = subject.split(".")
    if len(parts) != 4 or ".".join(parts[:2]) != INBOUND_PREFIX:
        return None
    return parts[2], parts[3]


# The durable consumers of the pipeline services (stream, durable): present once they have started.
CONSUMER_READY: tuple[tuple[str, str], ...] = (
    (INBOUND_STREAM, "enrollment-county-v1"),
    (EVENTS_STREAM, "subsidy-v1"),
)
