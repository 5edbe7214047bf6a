"""Claims' two handlers.

* Intake (insurer systems -> log): a reported claim is recorded in its own stream as the insurer
  sent it. Nothing is decided here.
* Decisions (recorded events in log order): ``PolicyIssued`` gives claims the cover to check
  against; a recorded ``ClaimReported`` is decided against that cover. A claim can reach the log
  before its policy (the insurer and the county publish independently): it is deferred, kept in
  ``claims_deferred``, and decided in the transaction that records its policy, or rejected
  ``unknown_policy`` after 30 days of log time (see ``decider``). Those later decisions are caused
  by the claim's ``ClaimDeferred`` (ids derived from it, the insurer's correlation id kept), so a
  redelivery derives the same events and changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from dataclasses import replace as dataclass_replace
from decimal import Decimal

from sqlalchemy import delete, insert, or_, select, update

from services.claims.decider import (
    DEFERRAL_PERIOD,
    ClaimEvent,
    ClaimsState,
    Deferred,
    PersonCover,
    PolicyCover,
    cover_from_policy,
    decide,
    decide_expired,
    decide_waiting,
    defer,
    deferral,
    evolve,
)
from services.claims.tables import claims_seen, deferred, persons, policies
from shared.domain.calendar import cst_date
from shared.events import EventMessage, RecordedEvent, registry
from shared.events.claims import ClaimDeferred, ClaimPaid, ClaimReported, CoverEnded
from shared.events.consumer import Incoming, Rejected, outcomes
from shared.events.enrollment import PolicyAmended, PolicyCancelled, PolicyIssued
from shared.events.producers import received_from, without_recorded_before_scoping
from shared.events.store import StreamAppend, Transaction
from shared.events.subjects import PRODUCER_EVENTS, split_inbound

SERVICE = "claims"
CONSUMES = ("PolicyIssued", "PolicyAmended", "PolicyCancelled", "ClaimReported")


class ClaimsIntakeHandler:
    consumer = "claims-insurer-v1"

    def parse(self, message: Incoming) -> EventMessage:
        where = split_inbound(message.subject)
        event = registry.parse_message(message.body, expected_type=where[1] if where else None)
        if where is None or where[1] != event.event_type or event.event_type not in PRODUCER_EVENTS["insurer"]:
            raise Rejected("subject_mismatch", f"{event.event_type} may not be sent on {message.subject}", str(event.event_id))
        return received_from("insurer", event)  # recorded under a producer-scoped id (shared/events/producers.py)

    async def handle(self, tx: Transaction, events: Sequence[EventMessage]) -> None:
        events = await without_recorded_before_scoping(tx.connection, self.consumer, events)
        await tx.append_streams([StreamAppend(f"claim-{e.payload.claim_id}", [e]) for e in events])  # type: ignore[attr-defined]


class ClaimsHandler:
    consumer = "claims-v1"

    def parse(self, message: Incoming) -> EventMessage:
        return registry.parse_published(message.subject, message.body)

    async def handle(self, tx: Transaction, events: Sequence[EventMessage]) -> None:
        conn = tx.connection
        state = await load_state(conn, events)
        appends: list[StreamAppend] = []
        for event in events:
            for waiting, decided in decide_expired(state, event.recorded_at):  # type: ignore[attr-defined]
                appends.append(await settle(conn, state, waiting, decided, event))  # type: ignore[arg-type]
            payload = event.payload
            if isinstance(payload, PolicyAmended | PolicyCancelled) and payload.policy_number in state.policies:
                await amend(conn, state, payload)
            elif isinstance(payload, PolicyIssued):
                if payload.policy_number not in state.policies:
                    cover = cover_from_policy(payload)
                    state.policies[payload.policy_number] = cover
                    await save_new_cover(conn, cover)
                for waiting, decided in decide_waiting(payload.policy_number, state, event.occurred_at):
                    appends.append(await settle(conn, state, waiting, decided, event))  # type: ignore[arg-type]
            elif isinstance(payload, ClaimReported):
                decided = decide(payload, state, paid_on=cst_date(event.occurred_at))
                if payload.claim_id not in state.claims_seen:  # a repeat is rejected, and already seen
                    await conn.execute(insert(claims_seen), {"claim_id": payload.claim_id})
                evolve(state, payload)
                recorded = outcomes(event, decided, SERVICE)
                for d, message in zip(decided, recorded, strict=True):
                    evolve(state, d)
                    await save_change(conn, state, d)
                    if isinstance(d, ClaimDeferred):
                        await hold(conn, state, event, message)  # type: ignore[arg-type]
                appends.append(StreamAppend(f"claim-{payload.claim_id}", recorded))
        if appends:
            await tx.append_streams(appends)


@dataclass(frozen=True)
class Held(Deferred):
    """A deferred claim with what its later decision is filed under: its ``ClaimDeferred`` (the
    cause) and the insurer's correlation id."""

    deferral_id: uuid.UUID
    correlation_id: uuid.UUID


async def hold(conn, state: ClaimsState, claim: RecordedEvent, deferral_message: EventMessage) -> None:  # type: ignore[no-untyped-def]
    held = Held(claim.payload, claim.occurred_at, claim.recorded_at, deferral_message.event_id,  # type: ignore[arg-type]
                claim.correlation_id)
    defer(state, held)
    await conn.execute(insert(deferred), {
        "claim_id": held.claim.claim_id, "policy_number": held.claim.policy_number, "claim": held.claim.model_dump_json(),
        "occurred_at": held.occurred_at, "recorded_at": held.recorded_at, "deferral_id": str(held.deferral_id),
        "correlation_id": str(held.correlation_id),
    })


async def settle(conn, state: ClaimsState, held: Held, decided: list[ClaimEvent], trigger: EventMessage) -> StreamAppend:  # type: ignore[no-untyped-def]
    """Record the decision of a deferred claim, made when ``trigger`` was handled (its policy, or
    the event that ended its wait), in the claim's stream."""
    cause = EventMessage.new(deferral(held.claim), source=SERVICE, occurred_at=max(held.occurred_at, trigger.occurred_at),
                             event_id=held.deferral_id, correlation_id=held.correlation_id)
    for d in decided:
        evolve(state, d)
        await save_change(conn, state, d)
    await conn.execute(delete(deferred).where(deferred.c.claim_id == held.claim.claim_id))
    return StreamAppend(f"claim-{held.claim.claim_id}", outcomes(cause, decided, SERVICE))


async def load_state(conn, events: Sequence[EventMessage]) -> ClaimsState:  # type: ignore[no-untyped-def]
    state = ClaimsState()
    claims = [e.payload for e in events if isinstance(e.payload, ClaimReported)]
    numbers = {c.policy_number for c in claims} | {
        e.payload.policy_number for e in events if isinstance(e.payload, PolicyIssued | PolicyCancelled)}
    if numbers:
        for row in await conn.execute(select(policies).where(policies.c.policy_number.in_(numbers))):
            state.policies[row.policy_number] = PolicyCover(
                row.policy_number, row.programme_year, row.township, row.first_day, row.last_day, row.medical_remaining_fen,
                deductible_fen=row.deductible_fen, payment_ratio=None if row.payment_ratio is None else Decimal(row.payment_ratio))
        for row in await conn.execute(select(persons).where(persons.c.policy_number.in_(numbers))):
            state.policies[row.policy_number].persons[row.resident_id] = PersonCover(
                row.sum_fen, row.disability_paid_fen, bool(row.ended), row.ended_on)
    if claims:
        rows = await conn.execute(select(claims_seen.c.claim_id).where(claims_seen.c.claim_id.in_({c.claim_id for c in claims})))
        state.claims_seen.update(r[0] for r in rows)
    # The claims waiting for a policy of this batch, and those whose wait ends in it, in arrival order.
    if not events:
        return state
    arriving = {e.payload.policy_number for e in events if isinstance(e.payload, PolicyIssued)}
    ended = max(e.recorded_at for e in events) - DEFERRAL_PERIOD  # type: ignore[attr-defined]
    d = deferred.c
    for row in await conn.execute(select(d.claim, d.occurred_at, d.recorded_at, d.deferral_id, d.correlation_id)
                                  .where(or_(d.policy_number.in_(arriving), d.recorded_at <= ended)).order_by(d.seq)):
        defer(state, Held(ClaimReported.model_validate_json(row.claim), row.occurred_at, row.recorded_at,
                          uuid.UUID(row.deferral_id), uuid.UUID(row.correlation_id)))
    return state


async def save_new_cover(conn, cover: PolicyCover) -> None:  # type: ignore[no-untyped-def]
    await conn.execute(insert(policies), {
        "policy_number": cover.policy_number, "programme_year": cover.programme_year, "township": cover.township,
        "first_day": cover.first_day, "last_day": cover.last_day, "medical_remaining_fen": cover.medical_remaining_fen,
        "deductible_fen": cover.deductible_fen,
        "payment_ratio": None if cover.payment_ratio is None else str(cover.payment_ratio),
    })
    await conn.execute(insert(persons), [
        {"policy_number": cover.policy_number, "resident_id": rid, "sum_fen": p.sum_fen,
         "disability_paid_fen": p.disability_paid_fen, "ended": p.ended}
        for rid, p in cover.persons.items()
    ])


async def save_change(conn, state: ClaimsState, event) -> None:  # type: ignore[no-untyped-def]
    if isinstance(event, ClaimPaid):
        cover = state.policies[event.policy_number]
        person = cover.persons[event.resident_id]
        await conn.execute(update(policies).where(policies.c.policy_number == cover.policy_number)
                           .values(medical_remaining_fen=cover.medical_remaining_fen))
        await conn.execute(update(persons).where(persons.c.policy_number == cover.policy_number,
                                                 persons.c.resident_id == event.resident_id)
                           .values(disability_paid_fen=person.disability_paid_fen))
    elif isinstance(event, CoverEnded):
        await conn.execute(update(persons).where(persons.c.policy_number == event.policy_number,
                                                 persons.c.resident_id == event.resident_id)
                           .values(ended=True, ended_on=event.ended_on))


def amended_cover(old: PolicyCover, change: PolicyAmended | PolicyCancelled) -> PolicyCover:
    """The cover after a county's correction: the amended policy's, with what was already paid
    carried over (to each person by ID number, or by the number it replaces, and of the household's
    medical limit); a cancelled policy insures nobody."""
    if isinstance(change, PolicyCancelled):
        return dataclass_replace(old, persons={})
    cover = cover_from_policy(change)
    was = {c.now: c.was for c in change.renamed}
    for number, person in cover.persons.items():
        before = old.persons.get(was.get(number, number))
        if before is not None:
            cover.persons[number] = dataclass_replace(before, sum_fen=person.sum_fen)
    used = change.previous.medical_limit_fen - old.medical_remaining_fen
    cover.medical_remaining_fen = max(cover.medical_remaining_fen - used, 0)
    return cover


async def amend(conn, state: ClaimsState, change: PolicyAmended | PolicyCancelled) -> None:  # type: ignore[no-untyped-def]
    cover = state.policies[change.policy_number] = amended_cover(state.policies[change.policy_number], change)
    await conn.execute(update(policies).where(policies.c.policy_number == cover.policy_number).values(
        township=cover.township, first_day=cover.first_day, last_day=cover.last_day,
        medical_remaining_fen=cover.medical_remaining_fen))
    await conn.execute(delete(persons).where(persons.c.policy_number == cover.policy_number))
    if cover.persons:  # a person's columns are PersonCover's fields
        await conn.execute(insert(persons), [{"policy_number": cover.policy_number, "resident_id": number, **asdict(p)}
                                             for number, p in cover.persons.items()])
