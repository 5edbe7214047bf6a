"""Claims' two handlers.

* Intake (insurer systems -> log): a reported claim is recorded in its own stream as the insurer
  sent it. Nothing is decided here.
* Decisions (recorded events in log order): ``PolicyIssued`` gives claims the cover to check
  against; a recorded ``ClaimReported`` is decided against that cover. Because both come from the
  log in order, a claim is never decided before the policy it names is known.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select, update

from services.claims.decider import ClaimsState, PersonCover, PolicyCover, cover_from_policy, decide, evolve
from services.claims.tables import claims_seen, persons, policies
from shared.domain.calendar import cst_date
from shared.events import EventMessage, registry
from shared.events.claims import ClaimPaid, ClaimReported, CoverEnded
from shared.events.consumer import Incoming, Rejected, outcomes
from shared.events.enrollment import PolicyIssued
from shared.events.store import StreamAppend, Transaction
from shared.events.subjects import PRODUCER_EVENTS, split_inbound

SERVICE = "claims"
CONSUMES = ("PolicyIssued", "ClaimReported")


class ClaimsIntakeHandler:
    consumer = "claims-insurer-v1"

    def parse(self, message: Incoming) -> EventMessage:
        where = split_inbound(message.subject)
        event = registry.parse_message(message.body, expected_type=where[1] if where else None)
        if where is None or where[1] != event.event_type or event.event_type not in PRODUCER_EVENTS["insurer"]:
            raise Rejected("subject_mismatch", f"{event.event_type} may not be sent on {message.subject}", str(event.event_id))
        return event

    async def handle(self, tx: Transaction, events: Sequence[EventMessage]) -> None:
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
            payload = event.payload
            if isinstance(payload, PolicyIssued):
                if payload.policy_number not in state.policies:
                    cover = cover_from_policy(payload)
                    state.policies[payload.policy_number] = cover
                    await save_new_cover(conn, cover)
            elif isinstance(payload, ClaimReported):
                decided = decide(payload, state, paid_on=cst_date(event.occurred_at))
                if payload.claim_id not in state.claims_seen:  # a repeat is rejected, and already seen
                    await conn.execute(insert(claims_seen), {"claim_id": payload.claim_id})
                evolve(state, payload)
                for d in decided:
                    evolve(state, d)
                    await save_change(conn, state, d)
                appends.append(StreamAppend(f"claim-{payload.claim_id}", outcomes(event, decided, SERVICE)))
        if appends:
            await tx.append_streams(appends)


async def load_state(conn, events: Sequence[EventMessage]) -> ClaimsState:  # type: ignore[no-untyped-def]
    state = ClaimsState()
    claims = [e.payload for e in events if isinstance(e.payload, ClaimReported)]
    numbers = {c.policy_number for c in claims} | {e.payload.policy_number for e in events if isinstance(e.payload, PolicyIssued)}
    if numbers:
        for row in await conn.execute(select(policies).where(policies.c.policy_number.in_(numbers))):
            state.policies[row.policy_number] = PolicyCover(row.policy_number, row.programme_year, row.township,
                                                            row.first_day, row.last_day, row.medical_remaining_fen)
        for row in await conn.execute(select(persons).where(persons.c.policy_number.in_(numbers))):
            state.policies[row.policy_number].persons[row.resident_id] = PersonCover(
                row.sum_fen, row.disability_paid_fen, bool(row.ended))
    if claims:
        rows = await conn.execute(select(claims_seen.c.claim_id).where(claims_seen.c.claim_id.in_({c.claim_id for c in claims})))
        state.claims_seen.update(r[0] for r in rows)
    return state


async def save_new_cover(conn, cover: PolicyCover) -> None:  # type: ignore[no-untyped-def]
    await conn.execute(insert(policies), {
        "policy_number": cover.policy_number, "programme_year": cover.programme_year, "township": cover.township,
        "first_day": cover.first_day, "last_day": cover.last_day, "medical_remaining_fen": cover.medical_remaining_fen,
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
                                                 persons.c.resident_id == event.resident_id).values(ended=True))
