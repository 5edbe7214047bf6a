"""NATS subjects and JetStream streams: the documented way in and out of guanhuai.

Inbound (county and insurer systems publish here; one stream per producer kind,
``GUANHUAI_IN_COUNTY`` and ``GUANHUAI_IN_INSURER``, so that one producer's message ids never meet
another's in JetStream's duplicate window):
    guanhuai.in.<producer kind>.<EventType>     e.g. guanhuai.in.county.HouseholdRegistered
    guanhuai.in.county.<county code>.<EventType>  e.g. guanhuai.in.county.350421.HouseholdRegistered

The second form is a county's own (scoped) credential in a deployment of several counties: the
NATS server lets the user ``county-<code>`` publish under ``guanhuai.in.county.<code>.`` only, so
the code in the subject says which county sent it, and enrollment records households of that
county's own townships only (``area_not_permitted`` otherwise). The unscoped ``county`` user
(``guanhuai.in.county.<EventType>``, one county's deployment) may not publish the scoped form.
Both land in ``GUANHUAI_IN_COUNTY``.

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
    """``guanhuai.in.county.HouseholdRegistered`` -> ``("county", "HouseholdRegistered")``; a county's
    scoped subject ``guanhuai.in.county.350421.HouseholdRegistered`` -> ``("county", "HouseholdRegistered")``
    too (its county: :func:`inbound_producer`)."""
    parts = subject.split(".")
    if ".".join(parts[:2]) != INBOUND_PREFIX or not (len(parts) == 4 or (
            len(parts) == 5 and parts[2] in SCOPED_KINDS and is_area_token(parts[3]))):
        return None
    return parts[2], parts[-1]


# Producer kinds whose credentials may be scoped to an area: guanhuai.in.<kind>.<area code>.<EventType>.
SCOPED_KINDS = ("county",)
# What a scoped county credential sends: its households. The programme's areas, targets, terms and
# subsidy plans reach every county's households, so they come from the deployment's unscoped
# ``county`` credential (the province's operator); enrollment dead-letters them on a scoped subject.
SCOPED_EVENTS: dict[str, tuple[str, ...]] = {
    "county": ("HouseholdRegistered", "HouseholdCorrected", "PolicyCancellationRequested"),
}


def producer_sends(producer: str, event_type: str) -> bool:
    """Whether ``producer`` (``county``, ``county.350421``) may send ``event_type``."""
    kind = producer.partition(".")[0]
    allowed = SCOPED_EVENTS.get(kind, ()) if producer_area(producer) else PRODUCER_EVENTS.get(kind, ())
    return event_type in allowed


def is_area_token(code: str) -> bool:
    """Whether an area code can stand in a subject (and a NATS user name): letters, digits, ``_``, ``-``."""
    return 0 < len(code) <= 64 and code.isascii() and all(c.isalnum() or c in "_-" for c in code)


def scoped_inbound_subject(kind: str, area: str, event_type: str) -> str:
    """The subject a producer credential scoped to ``area`` publishes on: ``guanhuai.in.county.<area>.<EventType>``."""
    if kind not in SCOPED_KINDS or not is_area_token(area):
        raise ValueError(f"no scoped {kind} subject for area {area!r}")
    return f"{INBOUND_PREFIX}.{kind}.{area}.{inbound_subject(kind, event_type).rsplit('.', 1)[1]}"


def inbound_producer(subject: str) -> str | None:
    """Who sent an inbound message, as its subject (which the NATS server lets that credential
    alone publish on) says: ``county`` for ``guanhuai.in.county.<EventType>``, ``county.350421``
    for ``guanhuai.in.county.350421.<EventType>``; None for a subject that is no inbound one."""
    if split_inbound(subject) is None:
        return None
    parts = subject.split(".")
    return ".".join(parts[2:-1])


def producer_area(producer: str) -> str | None:
    """The area a producer is scoped to (``county.350421`` -> ``350421``); None: unscoped."""
    _kind, _, area = producer.partition(".")
    return area or None


# The durable consumers of the pipeline services (stream, durable): present once they have started.
CONSUMER_READY: tuple[tuple[str, str], ...] = (
    (INBOUND_STREAMS["county"], "enrollment-county-v1"),
    (EVENTS_STREAM, "subsidy-v1"),
)
