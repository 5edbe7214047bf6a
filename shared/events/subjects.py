"""NATS subjects and JetStream streams: the documented way in and out of guanhuai.

Inbound (county and insurer systems publish here; one stream per producer kind,
``GUANHUAI_IN_COUNTY`` and ``GUANHUAI_IN_INSURER``, so that one producer's message ids never meet
another's in JetStream's duplicate window):
    guanhuai.in.<producer kind>.<EventType>     e.g. guanhuai.in.county.HouseholdRegistered

Recorded (every event of the log, published in log order after it is committed; ``GUANHUAI_EVENTS``):
    guanhuai.events.<EventType>                 e.g. guanhuai.events.PolicyIssued

Every message carries its event id as the ``Nats-Msg-Id`` header (JetStream de-duplication).
"""

from __future__ import annotations

INBOUND_PREFIX = "guanhuai.in"
EVENTS_STREAM = "GUANHUAI_EVENTS"
EVENTS_PREFIX = "guanhuai.events"
MAX_MESSAGE_BYTES = 256 * 1024  # a household of 30 members is ~5 KB; anything near this is abuse

# What each kind of producer may send. The service that records a kind's inbound events:
#   county  -> enrollment (households, targets, areas, the year's product terms, subsidy plans and their closing)
#   insurer -> claims (claims reported)
PRODUCER_EVENTS: dict[str, tuple[str, ...]] = {
    "county": (
        "HouseholdRegistered",
        "HouseholdCorrected",
        "PolicyCancellationRequested",
        "TownshipTargetSet",
        "AreaRegistered",
        "SubsidyPlanPublished",
        "SubsidyPlanCloseRequested",
        # The county publishes the terms it contracted with the insurer: the policies it issues carry
        # them, and enrollment records county events only (the insurer's stream feeds claims).
        "ProductTermsPublished",
    ),
    "insurer": ("ClaimReported",),
}


# One inbound stream per producer kind: JetStream de-duplicates by Nats-Msg-Id within a stream, so
# a shared stream let one producer's ids shadow another's (a county publishing the insurer's claim
# ids made the insurer's real claims "duplicates").
INBOUND_STREAMS: dict[str, str] = {kind: f"GUANHUAI_IN_{kind.upper()}" for kind in PRODUCER_EVENTS}
# The single inbound stream of earlier versions (both kinds' subjects); see broker.ensure_streams.
LEGACY_INBOUND_STREAM = "GUANHUAI_IN"


def inbound_stream(kind: str) -> str:
    return INBOUND_STREAMS[kind]


def inbound_subjects(kind: str) -> str:
    """What a producer kind's stream (and its service's consumer) takes: ``guanhuai.in.<kind>.>``."""
    return f"{INBOUND_PREFIX}.{kind}.>"


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
    (INBOUND_STREAMS["county"], "enrollment-county-v1"),
    (EVENTS_STREAM, "subsidy-v1"),
)
