"""Subsidy's handler: recorded events in log order (plans, policies, closings) -> decisions.

It consumes the recorded-event stream, so a plan and the policies around it arrive in the order
the log has them. State comes from subsidy's own tables: a batch is decided (``prepare``) before
the log's write lock is taken, and decided again under it if another instance wrote meanwhile
(see ``shared.events.consumer.commit``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Executable, insert, select, update

from services.subsidy.decider import (
    LineUsage,
    PlanState,
    SubsidyState,
    decide_close,
    decide_plan,
    decide_policy,
    defer,
    evolve,
)
from services.subsidy.tables import deferred, line_usage, plans, subsidised
from shared.events import EventMessage, registry
from shared.events.base import DomainEvent
from shared.events.bulk import insert_rows
from shared.events.consumer import DeciderHandler, Incoming, outcomes
from shared.events.keyed import rows_by_year
from shared.events.enrollment import PolicyIssued
from shared.events.store import StreamAppend, Transaction
from shared.events.subsidy import (
    SubsidyApproved,
    SubsidyDeferred,
    SubsidyDisbursed,
    SubsidyPlanCloseRequested,
    SubsidyPlanPublished,
    SubsidyPlanRequestRefused,
)

SERVICE = "subsidy"
CONSUMES = ("PolicyIssued", "SubsidyPlanPublished", "SubsidyPlanCloseRequested")


class SubsidyHandler(DeciderHandler):
    consumer = "subsidy-v1"

    def parse(self, message: Incoming) -> EventMessage:
        return registry.parse_published(message.subject, message.body)

    def prepare(self, conn: Connection, events: Sequence[EventMessage]) -> Decided:
        """Decide a batch on the state in subsidy's own tables; nothing is written here."""
        state = load_state(conn, events)
        before = {(p, line): (u.persons, u.amount_fen) for p, ps in state.plans.items() for line, u in ps.usage.items()}
        done = Decided()
        for event in events:
            decided, stream = decide_one(done, state, event.payload)
            for d in decided:
                evolve(state, d)
                done.note(d)
            if decided:
                done.appends.append(StreamAppend(stream, outcomes(event, decided, SERVICE)))
        done.statements += usage_changes(state, before)
        return done


def decide_one(done: Decided, state: SubsidyState, payload: DomainEvent) -> tuple[list[DomainEvent], str]:
    """What an input leads to, and the stream it is recorded in; a policy deferred or a plan
    taken is kept in ``state`` at once (an input after it in this same batch must see it)."""
    if isinstance(payload, PolicyIssued):
        decided = decide_policy(payload, state)
        if any(isinstance(d, SubsidyDeferred) for d in decided):
            defer(state, payload)
            done.statements.append(insert(deferred).values(
                programme_year=payload.programme_year, policy=payload.model_dump_json(), decided=False))
        return decided, f"subsidy-{payload.policy_number}"
    if isinstance(payload, SubsidyPlanPublished):
        decided = decide_plan(payload, state)
        if not any(isinstance(d, SubsidyPlanRequestRefused) for d in decided):
            evolve(state, payload)
            done.statements.append(insert(plans).values(
                plan_id=payload.plan_id, programme_year=payload.programme_year, plan=payload.model_dump_json(), closed=False))
            done.statements.append(update(deferred).where(deferred.c.programme_year == payload.programme_year)
                                   .values(decided=True))
        return decided, f"subsidy-plan-{payload.plan_id}"
    if isinstance(payload, SubsidyPlanCloseRequested):
        return decide_close(payload, state), f"subsidy-plan-{payload.plan_id}"
    return [], ""


@dataclass
class Decided:
    """A batch decided: what goes to the log, who is now subsidised, and the changes to plans,
    deferred policies and line usage, in the order they were made."""

    appends: list[StreamAppend] = field(default_factory=list)
    people: list[tuple[int, str, str]] = field(default_factory=list)
    statements: list[Executable] = field(default_factory=list)

    def note(self, decision: DomainEvent) -> None:
        """Who a decision subsidises, and the plan it closes."""
        if isinstance(decision, SubsidyApproved):
            self.people.append((decision.programme_year, decision.resident_id, decision.plan_id))
        if isinstance(decision, SubsidyDisbursed):
            self.statements.append(update(plans).where(plans.c.plan_id == decision.plan_id).values(closed=True))

    def write(self, tx: Transaction) -> None:
        conn = tx.connection
        if self.appends:
            tx.append_streams(self.appends)
        for statement in self.statements:
            conn.execute(statement)
        insert_rows(conn, subsidised, ("programme_year", "resident_id", "plan_id"), self.people)


def load_state(conn: Connection, events: Sequence[EventMessage]) -> SubsidyState:
    state = SubsidyState()
    for row in conn.execute(select(plans.c.plan, plans.c.closed)):
        plan = SubsidyPlanPublished.model_validate_json(row[0])
        state.plans[plan.plan_id] = PlanState(plan, closed=bool(row[1]))
        state.plan_of_year[plan.programme_year] = plan.plan_id
    for row in conn.execute(select(line_usage)):
        if row.plan_id in state.plans:
            state.plans[row.plan_id].usage[row.line] = LineUsage(row.persons, row.amount_fen)
    people = {(e.payload.programme_year, p.resident_id) for e in events if isinstance(e.payload, PolicyIssued)
              for p in e.payload.insured}
    years = {e.payload.programme_year for e in events if isinstance(e.payload, SubsidyPlanPublished)}
    if years:
        rows = conn.execute(select(deferred.c.programme_year, deferred.c.policy)
                                  .where(deferred.c.programme_year.in_(years), deferred.c.decided.is_(False))
                                  .order_by(deferred.c.seq))
        for year, policy in rows:
            state.deferred.setdefault(year, []).append(PolicyIssued.model_validate_json(policy))
            people.update((year, p.resident_id) for p in state.deferred[year][-1].insured)
    rows = rows_by_year(conn, subsidised.c.programme_year, subsidised.c.resident_id, people)
    state.subsidised.update((r[0], r[1]) for r in rows)
    return state


def usage_changes(state: SubsidyState, before: dict) -> list[Executable]:  # type: ignore[type-arg]
    """The line-usage rows that this batch created or changed."""
    changes: list[Executable] = []
    for plan_id, plan in state.plans.items():
        for line, usage in plan.usage.items():
            old = before.get((plan_id, line))
            if old is None:
                changes.append(insert(line_usage).values(plan_id=plan_id, line=line, persons=usage.persons,
                                                         amount_fen=usage.amount_fen))
            elif old != (usage.persons, usage.amount_fen):
                changes.append(update(line_usage).where(line_usage.c.plan_id == plan_id, line_usage.c.line == line)
                               .values(persons=usage.persons, amount_fen=usage.amount_fen))
    return changes
