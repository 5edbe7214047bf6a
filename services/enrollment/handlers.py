"""Enrollment's handler: load the state a batch needs, decide, append, save the state.

Inbound county events are recorded in the log as they arrive (the county's word, with its own
event id and source); a registration is followed in its household's stream by the policy or the
rejection it led to, with an id derived from the registration's.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import delete, insert, select
from sqlalchemy import Connection

from services.enrollment.areas import load_areas, record_areas
from services.enrollment.decider import HouseholdFile, decide_cancellation, decide_correction
from services.enrollment.decider import EnrollmentState, Terms, area_of, decide, evolve, policy_number, resolved_for
from services.enrollment.tables import insured_households, insured_persons, product_terms
from shared.domain.areas import Areas
from shared.events import EventMessage, registry
from shared.events.bulk import insert_rows
from shared.events.consumer import DeciderHandler, Incoming, Rejected, outcomes
from shared.events.keyed import rows_by_year
from shared.events.producers import InboundMessage, received_from, recorded_id, without_recorded_before_scoping
from shared.events.base import DomainEvent
from shared.events.enrollment import (
    HouseholdCorrected,
    HouseholdRegistered,
    PolicyAmended,
    PolicyCancellationRequested,
    PolicyCancelled,
    PolicyIssued,
)
from shared.events.programme import AreaRegistered, ProductTermsPublished, TownshipTargetSet
from shared.events.store import StreamAppend, Transaction
from shared.events.tables import events as log_events
from shared.events.subjects import inbound_producer, producer_area, producer_sends, split_inbound
from shared.events.subsidy import SubsidyPlanCloseRequested, SubsidyPlanPublished

SERVICE = "enrollment"


def stream_of(event: EventMessage) -> str:
    """Where the log keeps a county event: by the thing it is about."""
    match event.payload:
        case HouseholdRegistered(programme_year=year, household_id=hid) | PolicyCancellationRequested(
                programme_year=year, household_id=hid):  # a correction is a HouseholdRegistered too
            return household_stream(year, hid)
        case TownshipTargetSet(programme_year=year, township=township):
            return f"targets-{year}-{township}"
        case AreaRegistered(code=code):
            return f"area-{code}"
        case ProductTermsPublished(programme_year=year):
            return f"terms-{year}"
        case SubsidyPlanPublished(plan_id=plan) | SubsidyPlanCloseRequested(plan_id=plan):
            return f"plan-{plan}"
    raise Rejected("unexpected_event_type", f"enrollment does not record {event.event_type}", str(event.event_id))


class EnrollmentHandler(DeciderHandler):
    consumer = "enrollment-county-v1"

    def parse(self, message: Incoming) -> EventMessage:
        where = split_inbound(message.subject)
        event = registry.parse_message(message.body, expected_type=where[1] if where else None)
        # Who sent it: the subject says (``county``, or ``county.<code>`` for a county's scoped
        # credential), and the NATS server lets that credential alone publish on it.
        producer = inbound_producer(message.subject) or ""
        if where is None or where[1] != event.event_type or not producer_sends(producer, event.event_type):
            raise Rejected("subject_mismatch", f"{event.event_type} may not be sent on {message.subject}", str(event.event_id))
        return received_from(producer, event)  # recorded under a producer-scoped id (shared/events/producers.py)

    def prepare(self, conn: Connection, events: Sequence[EventMessage]) -> Enrolled:
        """Decide a batch on the state in enrollment's own tables; nothing is written here."""
        events = without_recorded_before_scoping(conn, self.consumer, events)
        registrations = [e.payload for e in events if isinstance(e.payload, HouseholdRegistered)]
        registered = [e.payload for e in events if isinstance(e.payload, AreaRegistered)]
        state = load_state(conn, registrations, registered, [county_of(e) for e in events
                                                             if isinstance(e.payload, HouseholdRegistered)])
        if not state.areas.by_code and any(county_of(e) for e in events):  # a scoped cancellation's check
            state.areas = load_areas(conn)
        files = load_files(conn, events)
        enrolled = Enrolled()
        for event in events:
            recorded = [event]
            if isinstance(event.payload, HouseholdCorrected | PolicyCancellationRequested):
                recorded += outcomes(event, [correct(event, files, state, enrolled)], SERVICE)
            elif isinstance(event.payload, HouseholdRegistered):
                outcome = decide(event.payload, state, county_of(event))
                evolve(state, outcome)
                recorded += outcomes(event, [outcome], SERVICE)
                if isinstance(outcome, PolicyIssued):
                    enrolled.households.append((outcome.programme_year, outcome.household_id, outcome.policy_number))
                    enrolled.persons += [(outcome.programme_year, p.resident_id, outcome.policy_number) for p in outcome.insured]
            elif isinstance(event.payload, AreaRegistered):  # names the households after it, in this batch too
                evolve(state, event.payload)
                enrolled.areas.append(event.payload)
            elif isinstance(event.payload, ProductTermsPublished):  # for the policies after it, in this batch too
                evolve(state, event.payload)
                enrolled.terms[event.payload.programme_year] = state.terms[event.payload.programme_year]
            keep_file(files, recorded)
            enrolled.appends.append(StreamAppend(stream_of(event), recorded))
        return enrolled


def county_of(event: EventMessage) -> str | None:
    """The county a scoped credential sent ``event`` for (None: the unscoped credential)."""
    return producer_area(event.producer) if isinstance(event, InboundMessage) and event.producer else None


@dataclass
class Enrolled:
    """A batch decided: what goes to the log, and who is now insured for the year."""

    appends: list[StreamAppend] = field(default_factory=list)
    households: list[tuple[int, str, str]] = field(default_factory=list)
    persons: list[tuple[int, str, str]] = field(default_factory=list)
    freed: set[tuple[int, str]] = field(default_factory=set)  # (year, id number): no longer insured (corrections)
    terms: dict[int, Terms] = field(default_factory=dict)  # year -> terms now in force
    areas: list[AreaRegistered] = field(default_factory=list)

    def release(self, year: int, numbers: Sequence[str]) -> None:
        """These persons are no longer insured this year (their policy was amended or cancelled)."""
        gone = {(year, number) for number in numbers}
        self.persons = [p for p in self.persons if (p[0], p[1]) not in gone]  # insured earlier in this batch
        self.freed |= gone

    def write(self, tx: Transaction) -> None:
        conn = tx.connection
        tx.append_streams(self.appends)
        insert_rows(conn, insured_households, ("programme_year", "household_id", "policy_number"), self.households)
        free_persons(conn, self.freed)
        insert_rows(conn, insured_persons, ("programme_year", "resident_id", "policy_number"), self.persons)
        record_areas(conn, self.areas)
        for year, terms in self.terms.items():
            conn.execute(delete(product_terms).where(product_terms.c.programme_year == year))
            conn.execute(insert(product_terms), {
                "programme_year": year, "premium_per_unit_fen": terms.premium_per_unit_fen,
                "death_disability_per_unit_fen": terms.death_disability_per_unit_fen,
                "medical_limit_per_unit_fen": terms.medical_limit_per_unit_fen, "deductible_fen": terms.deductible_fen,
                "payment_ratio": str(terms.payment_ratio)})


def load_state(conn, registrations: Sequence[HouseholdRegistered],  # type: ignore[no-untyped-def]
                     registered: Sequence[AreaRegistered] = (), counties: Sequence[str | None] = ()) -> EnrollmentState:
    """What a batch's registrations are decided on; ``registered``: the batch's own areas, which
    name the policy numbers looked up here (``decide`` learns them in the batch's order);
    ``counties``: each registration's sender scope (``decide``; none given: unscoped)."""
    state = EnrollmentState()
    if not registrations:
        return state
    state.areas = load_areas(conn)
    ahead = EnrollmentState(areas=Areas.of([*state.areas.by_code.values(), *map(area_of, registered)]))
    scopes = list(counties) or [None] * len(registrations)
    registrations = [r for r in (resolved_for(r, ahead, c) for r, c in zip(registrations, scopes, strict=True))
                     if isinstance(r, HouseholdRegistered)]
    years = {r.programme_year for r in registrations}
    for row in conn.execute(select(product_terms).where(product_terms.c.programme_year.in_(years))):
        state.terms[row.programme_year] = Terms(row.premium_per_unit_fen, row.death_disability_per_unit_fen,
                                                row.medical_limit_per_unit_fen, row.deductible_fen, Decimal(row.payment_ratio))
    households = {(r.programme_year, r.household_id) for r in registrations}
    persons = {(r.programme_year, m.resident_id.upper()) for r in registrations for m in r.members}
    persons |= {(r.programme_year - 1, m.resident_id.upper()) for r in registrations if r.renewal for m in r.members}
    h = insured_households.c
    state.insured_households.update(
        (r[0], r[1]) for r in rows_by_year(conn, h.programme_year, h.household_id, households))
    numbers = {(r.programme_year, policy_number(r)) for r in registrations}
    state.policy_numbers.update(r[1] for r in rows_by_year(conn, h.programme_year, h.policy_number, numbers))
    p = insured_persons.c
    state.insured_persons.update(
        {(r[0], r[1]): r[2] for r in rows_by_year(conn, p.programme_year, p.resident_id, persons, p.policy_number)})
    return state



# --- corrections (services/enrollment/decider.py: decide_correction, decide_cancellation) ---------


def household_stream(year: int, household_id: str) -> str:
    return f"household-{year}-{household_id}"


def load_files(conn: Connection, events: Sequence[EventMessage]) -> dict[tuple[int, str], HouseholdFile]:
    """The household files the batch's corrections and cancellations are decided on, read from
    enrollment's own household streams (a handful of events each)."""
    files: dict[tuple[int, str], HouseholdFile] = {}
    e = log_events.c
    for event in events:
        payload = event.payload
        if not isinstance(payload, HouseholdCorrected | PolicyCancellationRequested):
            continue
        key = (payload.programme_year, payload.household_id)
        if key in files:
            continue
        file = files[key] = HouseholdFile()
        rows = conn.execute(select(e.event_id, e.causation_id, e.occurred_at, e.event_type, e.schema_version, e.payload)
                                  .where(e.stream_id == household_stream(*key)).order_by(e.stream_version))
        for row in rows:
            file.record(uuid.UUID(row.event_id), uuid.UUID(row.causation_id) if row.causation_id else None,
                        row.occurred_at, registry.parse_payload(row.event_type, row.schema_version, row.payload))
    return files


def keep_file(files: dict[tuple[int, str], HouseholdFile], recorded: Sequence[EventMessage]) -> None:
    """Fold what a batch records in a household's stream into its file (a later event of the batch
    may correct it)."""
    payload = recorded[0].payload
    file = files.get((payload.programme_year, payload.household_id)) if isinstance(  # type: ignore[attr-defined]
        payload, HouseholdRegistered | PolicyCancellationRequested) else None
    for message in recorded if file is not None else ():
        file.record(message.event_id, message.causation_id, message.occurred_at, message.payload)  # type: ignore[union-attr]


def correct(event: EventMessage, files: dict[tuple[int, str], HouseholdFile], state: EnrollmentState,
            enrolled: Enrolled) -> DomainEvent:
    """Decide a correction or a cancellation; the persons of the policy it replaces are freed, and
    those of the amended policy insured."""
    request = event.payload
    file = files[(request.programme_year, request.household_id)]  # type: ignore[attr-defined]
    if isinstance(request, HouseholdCorrected):
        sender = event.producer if isinstance(event, InboundMessage) and event.producer else "county"
        named = next((i for i in dict.fromkeys((recorded_id(sender, request.corrects), recorded_id("county", request.corrects),
                                                request.corrects)) if i in file.registrations), None)
        outcome = decide_correction(request, named, file, state, event.occurred_at, county_of(event))
    else:
        outcome = decide_cancellation(request, file, event.occurred_at, county_of(event), state.areas)  # type: ignore[arg-type]
    if isinstance(outcome, PolicyAmended | PolicyCancelled):
        assert file.policy is not None
        enrolled.release(outcome.programme_year, [p.resident_id for p in file.policy.insured])
        evolve(state, outcome)
    if isinstance(outcome, PolicyAmended):
        enrolled.persons += [(outcome.programme_year, p.resident_id, outcome.policy_number) for p in outcome.insured]
    return outcome


def free_persons(conn: Connection, freed: set[tuple[int, str]]) -> None:
    for year in {year for year, _ in freed}:
        numbers = sorted(number for y, number in freed if y == year)
        conn.execute(delete(insured_persons).where(insured_persons.c.programme_year == year,
                                                         insured_persons.c.resident_id.in_(numbers)))
