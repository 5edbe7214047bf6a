"""The claim rules, as pure functions (no I/O).

From the insurer's product terms (国寿计划生育家庭意外伤害保险(A款)(2013版), see DOMAIN.md):
- the accident date must fall within the policy term (00:00 the day after issue to 24:00 on the
  end date, CST) and the person must be insured on that policy with cover not yet ended;
- death (within 180 days of the accident) pays the person's share of the death/disability sum
  minus disability benefit already paid to them; their cover then ends;
- disability (within 180 days) pays the share times the grade's ratio (grade 1 = 100%, ...,
  grade 10 = 10%); disability payments to one person add up to at most the share, and when they
  reach it that person's cover ends;
- accident medical pays (expenses - social insurance - deductible) x ratio, rounded half up once;
  all medical payments of one policy year add up to at most the household's shared limit. The
  deductible and ratio are the policy's (``PolicyIssued``, from the year's product terms): a claim
  may leave them out, and one that states others is rejected ``terms_mismatch``. A policy that
  carries none (a year without published terms) takes the claim's, and without them the claim is
  rejected ``terms_not_stated``;
- cover ends with a death, not before it: a medical claim for an accident on or before the date of
  death is judged as if the person were still covered (within what is left of the household's
  limit); any other claim on a person whose cover has ended is rejected ``cover_ended``.
A claim over a remaining limit is paid up to the limit, with the limit named.

A claim on a policy number not known yet is deferred (the policy may be on its way: a claim
published in the same burst as its household reaches the log first). It is decided when the policy
arrives, in the order the deferred claims came, or rejected ``unknown_policy`` once
``DEFERRAL_PERIOD`` of log time has passed without it. Log time is when the log recorded the
events the claims service handles (``recorded_at``): a claim deferred at T is rejected when the
service handles the first event recorded at T + 30 days or later (so a replay decides the same).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from shared.domain.calendar import cst_date
from shared.domain.money import apply_ratio
from shared.events.claims import ClaimDeferred, ClaimKind, ClaimPaid, ClaimRejected, ClaimReported, CoverEnded
from shared.events.enrollment import PolicyIssued

OUTCOME_WINDOW = timedelta(days=180)
DEFERRAL_PERIOD = timedelta(days=30)  # of log time (see the module's docstring)

ClaimEvent = ClaimPaid | ClaimRejected | CoverEnded | ClaimDeferred


def disability_ratio(grade: int) -> Decimal:
    """JR/T 0083-2013: grade 1 = 100%, 2 = 90%, ... 10 = 10%."""
    if not 1 <= grade <= 10:
        raise ValueError("disability grades run from 1 to 10")
    return Decimal(11 - grade) / 10


@dataclass
class PersonCover:
    sum_fen: int
    disability_paid_fen: int = 0
    ended: bool = False
    ended_on: date | None = None  # the date of death, when the cover ended by death


@dataclass
class PolicyCover:
    policy_number: str
    programme_year: int
    township: str
    first_day: date
    last_day: date
    medical_remaining_fen: int
    persons: dict[str, PersonCover] = field(default_factory=dict)
    deductible_fen: int | None = None  # the policy's medical terms; None: the claim states them
    payment_ratio: Decimal | None = None


@dataclass(frozen=True)
class Deferred:
    """A claim waiting for its policy: when it happened and when the log recorded it (the start of
    its ``DEFERRAL_PERIOD``)."""

    claim: ClaimReported
    occurred_at: datetime
    recorded_at: datetime


@dataclass
class ClaimsState:
    policies: dict[str, PolicyCover] = field(default_factory=dict)
    claims_seen: set[str] = field(default_factory=set)
    deferred: dict[str, list[Deferred]] = field(default_factory=dict)  # policy number -> claims, in arrival order


def cover_from_policy(policy: PolicyIssued) -> PolicyCover:
    # cover_end is 24:00 on the last day, i.e. 00:00 the next day (exclusive)
    return PolicyCover(
        policy_number=policy.policy_number,
        programme_year=policy.programme_year,
        township=policy.township,
        first_day=cst_date(policy.cover_start),
        last_day=cst_date(policy.cover_end) - timedelta(days=1),
        medical_remaining_fen=policy.medical_limit_fen,
        persons={p.resident_id: PersonCover(p.death_disability_sum_fen) for p in policy.insured},
        deductible_fen=policy.deductible_fen,
        payment_ratio=policy.payment_ratio,
    )


def decide(claim: ClaimReported, state: ClaimsState, paid_on: date) -> list[ClaimEvent]:
    """``paid_on`` is the day the decision is made (China Standard Time)."""
    policy = state.policies.get(claim.policy_number)
    if claim.claim_id in state.claims_seen:
        return [_rejected(claim, policy, "duplicate_claim")]
    if policy is None:
        return [deferral(claim)]
    return _judge(claim, policy, paid_on)


def deferral(claim: ClaimReported) -> ClaimDeferred:
    return ClaimDeferred(claim_id=claim.claim_id, policy_number=claim.policy_number, resident_id=claim.resident_id.upper(),
                         kind=claim.kind, accident_date=claim.accident_date, reported_on=claim.reported_on)


def decide_waiting(policy_number: str, state: ClaimsState, occurred_at: datetime) -> list[tuple[Deferred, list[ClaimEvent]]]:
    """The claims deferred on a policy now known, decided against it in the order they came, each
    on the day (CST) of the later of the claim and the policy's arrival. ``state`` is unchanged:
    what each decision uses up is taken from a copy of the cover, as the next claim must see."""
    scratch = ClaimsState(policies={policy_number: copy.deepcopy(state.policies[policy_number])})
    out: list[tuple[Deferred, list[ClaimEvent]]] = []
    for waiting in state.deferred.get(policy_number, []):
        decided = _judge(waiting.claim, scratch.policies[policy_number],
                         cst_date(max(waiting.occurred_at, occurred_at)), deferred_on=cst_date(waiting.occurred_at))
        for event in decided:
            evolve(scratch, event)
        out.append((waiting, decided))
    return out


def decide_expired(state: ClaimsState, now: datetime) -> list[tuple[Deferred, list[ClaimEvent]]]:
    """The claims deferred for ``DEFERRAL_PERIOD`` or more of log time (``now``): rejected
    ``unknown_policy``, in the order they came."""
    expired = sorted((w for waiting in state.deferred.values() for w in waiting if w.recorded_at + DEFERRAL_PERIOD <= now),
                     key=lambda w: w.recorded_at)
    return [(w, [_rejected(w.claim, None, "unknown_policy", deferred_on=cst_date(w.occurred_at))]) for w in expired]


def _rejected(claim: ClaimReported, policy: PolicyCover | None, reason: str, deferred_on: date | None = None) -> ClaimRejected:
    return ClaimRejected(claim_id=claim.claim_id, policy_number=claim.policy_number, resident_id=claim.resident_id.upper(),
                         programme_year=policy.programme_year if policy else None,
                         township=policy.township if policy else None, kind=claim.kind, reason=reason,
                         deferred_on=deferred_on)


def _judge(claim: ClaimReported, policy: PolicyCover, paid_on: date, deferred_on: date | None = None) -> list[ClaimEvent]:
    """A claim on a known policy: paid (and maybe ending cover) or rejected by the terms."""
    resident_id = claim.resident_id.upper()

    def reject(reason: str) -> list[ClaimEvent]:
        return [_rejected(claim, policy, reason, deferred_on)]

    person = policy.persons.get(resident_id)
    if person is None:
        return reject("not_insured_on_policy")
    if not policy.first_day <= claim.accident_date <= policy.last_day:
        return reject("outside_cover")
    if person.ended and not _before_death(claim, person):
        return reject("cover_ended")
    if claim.reported_on < claim.accident_date:
        return reject("reported_before_accident")
    if claim.kind is not ClaimKind.medical:
        # The contract requires outcome_date for death and disability claims.
        if claim.outcome_date is None or not claim.accident_date <= claim.outcome_date <= claim.accident_date + OUTCOME_WINDOW:
            return reject("outcome_not_within_180_days")

    def paid(amount: int, computed: int, limited_by: str | None) -> ClaimPaid:
        return ClaimPaid(claim_id=claim.claim_id, policy_number=policy.policy_number,
                         programme_year=policy.programme_year, township=policy.township, resident_id=resident_id,
                         kind=claim.kind, accident_date=claim.accident_date, paid_on=paid_on, amount_fen=amount,
                         computed_fen=computed, limited_by=limited_by, deferred_on=deferred_on)

    def cover_ended(reason: str, on: date | None = None) -> CoverEnded:
        return CoverEnded(policy_number=policy.policy_number, resident_id=resident_id, reason=reason,
                          claim_id=claim.claim_id, ended_on=on)

    match claim.kind:
        case ClaimKind.death:
            amount = person.sum_fen - person.disability_paid_fen
            return [paid(amount, amount, None), cover_ended("death", claim.outcome_date)]
        case ClaimKind.disability:
            assert claim.disability_grade is not None  # the contract requires it
            computed = apply_ratio(person.sum_fen, disability_ratio(claim.disability_grade))
            remaining = person.sum_fen - person.disability_paid_fen
            amount = min(computed, remaining)
            out: list[ClaimEvent] = [paid(amount, computed, "person_sum" if amount < computed else None)]
            if amount == remaining:
                out.append(cover_ended("disability_sum_exhausted"))
            return out
        case ClaimKind.medical:
            assert claim.expenses_fen is not None  # by contract
            terms = medical_terms(claim, policy)
            if isinstance(terms, str):
                return reject(terms)
            deductible, ratio = terms
            base = claim.expenses_fen - (claim.social_insurance_paid_fen or 0) - deductible
            computed = apply_ratio(max(base, 0), ratio)
            if computed > 0 and policy.medical_remaining_fen == 0:
                return reject("limit_exhausted")
            amount = min(computed, policy.medical_remaining_fen)
            return [paid(amount, computed, "household_medical_limit" if amount < computed else None)]
    raise AssertionError(f"unhandled claim kind {claim.kind}")


def _before_death(claim: ClaimReported, person: PersonCover) -> bool:
    """A medical claim for an accident on or before the day the person died: the accident happened
    while they were covered (on the day itself, before the death: no accident follows one)."""
    return claim.kind is ClaimKind.medical and person.ended_on is not None and claim.accident_date <= person.ended_on


def medical_terms(claim: ClaimReported, policy: PolicyCover) -> tuple[int, Decimal] | str:
    """The deductible and ratio a medical claim is paid with, or the reason it cannot be paid."""
    if policy.deductible_fen is None or policy.payment_ratio is None:  # a policy without terms: the claim's
        if claim.deductible_fen is None or claim.payment_ratio is None:
            return "terms_not_stated"
        return claim.deductible_fen, claim.payment_ratio
    if (claim.deductible_fen not in (None, policy.deductible_fen)
            or claim.payment_ratio not in (None, policy.payment_ratio)):
        return "terms_mismatch"
    return policy.deductible_fen, policy.payment_ratio


def evolve(state: ClaimsState, event: ClaimEvent | PolicyIssued | ClaimReported) -> ClaimsState:
    """Fold an event into the state (in place; the state is the service's working copy). A
    deferred claim is kept with :func:`defer` (the ``ClaimDeferred`` does not hold all of it); its
    decision, which names the day it was deferred, lets it go."""
    match event:
        case PolicyIssued():
            state.policies.setdefault(event.policy_number, cover_from_policy(event))
        case ClaimReported():
            state.claims_seen.add(event.claim_id)
        case ClaimPaid():
            policy = state.policies[event.policy_number]
            if event.kind is ClaimKind.disability:
                policy.persons[event.resident_id].disability_paid_fen += event.amount_fen
            elif event.kind is ClaimKind.medical:
                policy.medical_remaining_fen -= event.amount_fen
            _undefer(state, event)
        case CoverEnded():
            person = state.policies[event.policy_number].persons[event.resident_id]
            person.ended, person.ended_on = True, event.ended_on
        case ClaimRejected():
            _undefer(state, event)
        case ClaimDeferred():
            pass
    return state


def defer(state: ClaimsState, waiting: Deferred) -> ClaimsState:
    """Keep a claim whose policy is not known yet (after its ``ClaimDeferred``)."""
    state.deferred.setdefault(waiting.claim.policy_number, []).append(waiting)
    return state


def _undefer(state: ClaimsState, decision: ClaimPaid | ClaimRejected) -> None:
    if decision.deferred_on is None:
        return
    left = [w for w in state.deferred.get(decision.policy_number, []) if w.claim.claim_id != decision.claim_id]
    if left:
        state.deferred[decision.policy_number] = left
    else:
        state.deferred.pop(decision.policy_number, None)
