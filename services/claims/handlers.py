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

Both have enrollment's shape: ``prepare`` reads the state a batch needs once, decides it in memory
and returns what it leads to (``Received``, ``Decided``), which ``write`` appends and saves. So a
batch is decided before the log's write lock, and decided again under it if another instance of
the consumer wrote meanwhile (``shared.events.consumer.commit``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, or_, select, update

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
from shared.events.bulk import insert_rows
from shared.events.claims import ClaimDeferred, ClaimPaid, ClaimReported, CoverEnded
from shared.events.consumer import DeciderHandler, Incoming, Rejected, outcomes
from shared.events.enrollment import PolicyAmended, PolicyCancelled, PolicyIssued
from shared.events.producers import received_from, without_recorded_before_scoping
from shared.events.store import StreamAppend, Transaction
from shared.events.subjects import PRODUCER_EVENTS, split_inbound

SERVICE = "claims"
CONSUMES = ("PolicyIssued", "PolicyAmended", "PolicyCancelled", "ClaimReported")


class ClaimsIntakeHandler(DeciderHandler):
    consumer = "claims-insurer-v1"

    def parse(self, message: Incoming) -> EventMessage:
        where = split_inbound(message.subject)
        event = registry.parse_message(message.body, expected_type=where[1] if where else None)
        if where is None or where[1] != event.event_type or event.event_type not in PRODUCER_EVENTS["insurer"]:
            raise Rejected("subject_mismatch", f"{event.event_type} may not be sent on {message.subject}", str(event.event_id))
        return received_from("insurer", event)  # recorded under a producer-scoped id (shared/events/producers.py)

    def prepare(self, conn: Connection, events: Sequence[EventMessage]) -> Received:
        """Nothing to decide: each claim is recorded in its own stream, as the insurer sent it."""
        events = without_recorded_before_scoping(conn, self.consumer, events)
        return Received([StreamAppend(f"claim-{e.payload.claim_id}", [e]) for e in events])  # type: ignore[attr-defined]


@dataclass
class Received:
    """The insurer's claims of a batch, to be recorded."""

    appends: list[StreamAppend]

    def write(self, tx: Transaction) -> None:
        if self.appends:
            tx.append_streams(self.appends)


class ClaimsHandler(DeciderHandler):
    consumer = "claims-v1"

    def parse(self, message: Incoming) -> EventMessage:
        return registry.parse_published(message.subject, message.body)

    def prepare(self, conn: Connection, events: Sequence[EventMessage]) -> Decided:
        """Decide a batch on the state in claims' own tables, read once here; nothing is written."""
        state = load_state(conn, events)
        done = Decided(state.policies)
        for event in events:
            for waiting, decided in decide_expired(state, event.recorded_at):  # type: ignore[attr-defined]
                settle(done, state, waiting, decided, event)  # type: ignore[arg-type]
            payload = event.payload
            if isinstance(payload, PolicyAmended | PolicyCancelled) and payload.policy_number in state.policies:
                state.policies[payload.policy_number] = amended_cover(state.policies[payload.policy_number], payload)
                done.amended.add(payload.policy_number)
            elif isinstance(payload, PolicyIssued):
                arrive(done, state, event)
            elif isinstance(payload, ClaimReported):
                judge(done, state, event)  # type: ignore[arg-type]
        return done


POLICY_COLUMNS = ("policy_number", "programme_year", "township", "first_day", "last_day", "medical_remaining_fen",
                  "deductible_fen", "payment_ratio")
PERSON_COLUMNS = ("policy_number", "resident_id", "sum_fen", "disability_paid_fen", "ended", "ended_on")


@dataclass
class Decided:
    """A batch decided: what goes to the log, and the rows of claims' own tables it changes: the
    claims now seen, the claims that wait for their policy and those that no longer do, and the
    cover of each policy it touched, written as it stands at the end of the batch (``covers``,
    the batch's state)."""

    covers: dict[str, PolicyCover]
    appends: list[StreamAppend] = field(default_factory=list)
    seen: list[tuple[str]] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)  # claims_deferred rows, in the order the claims came
    settled: list[str] = field(default_factory=list)  # claims that no longer wait
    new: dict[str, PolicyCover] = field(default_factory=dict)  # policies claims did not know: as first issued
    amended: set[str] = field(default_factory=set)  # known policies a county corrected or cancelled
    used: set[str] = field(default_factory=set)  # policies of a payment
    persons: set[tuple[str, str]] = field(default_factory=set)  # (policy, ID number): paid, or their cover ended

    def note(self, decision: ClaimEvent) -> None:
        """What a decision changes of the cover (the state has it already)."""
        if isinstance(decision, ClaimPaid):
            self.used.add(decision.policy_number)
        if isinstance(decision, ClaimPaid | CoverEnded):
            self.persons.add((decision.policy_number, decision.resident_id))

    def write(self, tx: Transaction) -> None:
        conn = tx.connection
        if self.appends:
            tx.append_streams(self.appends)
        insert_rows(conn, claims_seen, ("claim_id",), self.seen)
        if self.held:
            conn.execute(insert(deferred), self.held)
        if self.settled:
            conn.execute(delete(deferred).where(deferred.c.claim_id.in_(self.settled)))
        write_covers(conn, self)


def write_covers(conn: Connection, done: Decided) -> None:
    """Policies new to claims are inserted as they now stand, and the persons of a corrected one
    replaced; of the others, what is left of the household's medical limit and of each person's
    cover is updated."""
    amended = [done.covers[n] for n in sorted(done.amended) if n not in done.new]
    for cover in amended:  # (its year and terms stay those of the policy first issued)
        conn.execute(update(policies).where(policies.c.policy_number == cover.policy_number).values(
            township=cover.township, first_day=cover.first_day, last_day=cover.last_day,
            medical_remaining_fen=cover.medical_remaining_fen))
    if amended:
        conn.execute(delete(persons).where(persons.c.policy_number.in_([c.policy_number for c in amended])))
    insert_rows(conn, policies, POLICY_COLUMNS, [policy_row(first, done.covers[n]) for n, first in done.new.items()])
    insert_rows(conn, persons, PERSON_COLUMNS, [
        (c.policy_number, number, p.sum_fen, p.disability_paid_fen, p.ended, p.ended_on)
        for c in [*(done.covers[n] for n in done.new), *amended] for number, p in c.persons.items()])
    update_covers(conn, done, done.new.keys() | done.amended)


def update_covers(conn: Connection, done: Decided, written: set[str]) -> None:
    """What is left of the cover of the policies paid on, but for those ``written`` whole."""
    used = [{"number": n, "remaining": done.covers[n].medical_remaining_fen} for n in sorted(done.used - written)]
    if used:
        conn.execute(update(policies).where(policies.c.policy_number == bindparam("number"))
                     .values(medical_remaining_fen=bindparam("remaining")), used)
    changed = [person_row(n, r, done.covers[n].persons[r]) for n, r in sorted(done.persons) if n not in written]
    if changed:
        p = persons.c
        conn.execute(update(persons).where(p.policy_number == bindparam("number"), p.resident_id == bindparam("id"))
                     .values(disability_paid_fen=bindparam("paid"), ended=bindparam("end"), ended_on=bindparam("on")),
                     changed)


def policy_row(first: PolicyCover, now: PolicyCover) -> tuple[Any, ...]:
    """A new policy's row: its year and terms as first issued (a correction does not change them
    in the table), the rest as it now stands."""
    ratio = None if first.payment_ratio is None else str(first.payment_ratio)
    return (now.policy_number, first.programme_year, now.township, now.first_day, now.last_day,
            now.medical_remaining_fen, first.deductible_fen, ratio)


def person_row(number: str, resident_id: str, person: PersonCover) -> dict[str, Any]:
    return {"number": number, "id": resident_id, "paid": person.disability_paid_fen, "end": person.ended,
            "on": person.ended_on}


@dataclass(frozen=True)
class Held(Deferred):
    """A deferred claim with what its later decision is filed under: its ``ClaimDeferred`` (the
    cause) and the insurer's correlation id."""

    deferral_id: uuid.UUID
    correlation_id: uuid.UUID


def arrive(done: Decided, state: ClaimsState, event: EventMessage) -> None:
    """A policy: its cover, if claims did not know it, and the claims that waited for it, decided."""
    policy: PolicyIssued = event.payload  # type: ignore[assignment]
    if policy.policy_number not in state.policies:
        state.policies[policy.policy_number] = done.new[policy.policy_number] = cover_from_policy(policy)
    for waiting, decided in decide_waiting(policy.policy_number, state, event.occurred_at):
        settle(done, state, waiting, decided, event)  # type: ignore[arg-type]


def judge(done: Decided, state: ClaimsState, event: RecordedEvent) -> None:
    """A reported claim: decided on its policy, or held until the policy comes."""
    claim: ClaimReported = event.payload  # type: ignore[assignment]
    decided = decide(claim, state, paid_on=cst_date(event.occurred_at))
    if claim.claim_id not in state.claims_seen:  # a repeat is rejected, and already seen
        done.seen.append((claim.claim_id,))
    evolve(state, claim)
    recorded = outcomes(event, decided, SERVICE)
    for d, message in zip(decided, recorded, strict=True):
        evolve(state, d)
        done.note(d)
        if isinstance(d, ClaimDeferred):
            hold(done, state, event, message)
    done.appends.append(StreamAppend(f"claim-{claim.claim_id}", recorded))


def hold(done: Decided, state: ClaimsState, claim: RecordedEvent, deferral_message: EventMessage) -> None:
    held = Held(claim.payload, claim.occurred_at, claim.recorded_at, deferral_message.event_id,  # type: ignore[arg-type]
                claim.correlation_id)
    defer(state, held)
    done.held.append({
        "claim_id": held.claim.claim_id, "policy_number": held.claim.policy_number, "claim": held.claim.model_dump_json(),
        "occurred_at": held.occurred_at, "recorded_at": held.recorded_at, "deferral_id": str(held.deferral_id),
        "correlation_id": str(held.correlation_id),
    })


def settle(done: Decided, state: ClaimsState, held: Held, decided: list[ClaimEvent], trigger: EventMessage) -> None:
    """Record the decision of a deferred claim, made when ``trigger`` was handled (its policy, or
    the event that ended its wait), in the claim's stream."""
    cause = EventMessage.new(deferral(held.claim), source=SERVICE, occurred_at=max(held.occurred_at, trigger.occurred_at),
                             event_id=held.deferral_id, correlation_id=held.correlation_id)
    for d in decided:
        evolve(state, d)
        done.note(d)
    done.settled.append(held.claim.claim_id)
    done.appends.append(StreamAppend(f"claim-{held.claim.claim_id}", outcomes(cause, decided, SERVICE)))


def load_state(conn: Connection, events: Sequence[EventMessage]) -> ClaimsState:
    """What a batch is decided on: the cover of the policies it names, which of its claims were
    seen before, and the claims waiting for a policy of the batch or whose wait ends in it."""
    state = ClaimsState()
    claims = [e.payload for e in events if isinstance(e.payload, ClaimReported)]
    numbers = {c.policy_number for c in claims} | {
        e.payload.policy_number for e in events if isinstance(e.payload, PolicyIssued | PolicyCancelled)}
    load_covers(conn, state, numbers)
    if claims:
        rows = conn.execute(select(claims_seen.c.claim_id).where(claims_seen.c.claim_id.in_({c.claim_id for c in claims})))
        state.claims_seen.update(r[0] for r in rows)
    if events:
        load_waiting(conn, state, events)
    return state


def load_covers(conn: Connection, state: ClaimsState, numbers: set[str]) -> None:
    if not numbers:
        return
    for row in conn.execute(select(policies).where(policies.c.policy_number.in_(numbers))):
        state.policies[row.policy_number] = PolicyCover(
            row.policy_number, row.programme_year, row.township, row.first_day, row.last_day, row.medical_remaining_fen,
            deductible_fen=row.deductible_fen, payment_ratio=None if row.payment_ratio is None else Decimal(row.payment_ratio))
    for row in conn.execute(select(persons).where(persons.c.policy_number.in_(numbers))):
        state.policies[row.policy_number].persons[row.resident_id] = PersonCover(
            row.sum_fen, row.disability_paid_fen, bool(row.ended), row.ended_on)


def load_waiting(conn: Connection, state: ClaimsState, events: Sequence[EventMessage]) -> None:
    """The claims waiting for a policy of this batch, and those whose wait ends in it, in arrival order."""
    arriving = {e.payload.policy_number for e in events if isinstance(e.payload, PolicyIssued)}
    ended = max(e.recorded_at for e in events) - DEFERRAL_PERIOD  # type: ignore[attr-defined]
    d = deferred.c
    for row in conn.execute(select(d.claim, d.occurred_at, d.recorded_at, d.deferral_id, d.correlation_id)
                            .where(or_(d.policy_number.in_(arriving), d.recorded_at <= ended)).order_by(d.seq)):
        defer(state, Held(ClaimReported.model_validate_json(row.claim), row.occurred_at, row.recorded_at,
                          uuid.UUID(row.deferral_id), uuid.UUID(row.correlation_id)))


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
