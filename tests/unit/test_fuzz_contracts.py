"""Fuzzing the way in, with no I/O: hostile payloads on every inbound subject (issue #6).

Valid events from the builders are mutated (``tests/support/hostile.py``) or given values drawn by
hypothesis, then taken exactly as far as the pipeline would take them without a database or a
broker: admitted or dead-lettered by the consumer core, stored as the log stores it and read back,
decided by the service that owns it. Whatever the input, it must end as a dead letter with a reason
code, or as recorded events (rejections included, each with its reason) that the log can hold and
read again; never as an exception nobody expected.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.claims.decider import ClaimsState, cover_from_policy
from services.claims.decider import decide as decide_claim
from services.claims.decider import evolve as evolve_claims
from services.claims.handlers import ClaimsIntakeHandler
from services.enrollment.decider import EnrollmentState
from services.enrollment.decider import decide as decide_registration
from services.enrollment.handlers import EnrollmentHandler, stream_of
from services.subsidy.decider import PlanState, SubsidyState, decide_close, decide_plan, decide_policy
from shared.domain.calendar import CST, cst_date, start_of_day
from shared.domain.identity import parse_resident_id
from shared.events import DomainEvent, EventContractError, EventMessage, RecordedEvent, registry
from shared.events.claims import ClaimKind, ClaimPaid, ClaimRejected, ClaimReported
from shared.events.consumer import Incoming, admit, outcomes
from shared.events.enrollment import HouseholdRegistered, HouseholdRejected, PolicyIssued
from shared.events.inbox import DeadLetter
from shared.events.programme import AreaLevel, AreaRegistered
from shared.events.registry import ROW_FIELDS
from shared.events.relay import published_body
from shared.events.subjects import event_subject, inbound_stream, split_inbound
from shared.events.subsidy import SubsidyPlanCloseRequested, SubsidyPlanPublished, SubsidyPlanRequestRefused, SubsidyRejected
from shared.events.tables import utc_text
from tests.support.events import target
from tests.support.hostile import CATEGORIES, SQL_AND_MARKUP, Hostile, hostile, message_json, subject_of
from tests.unit import builders as b

OCCURRED = datetime(2024, 3, 1, 10, tzinfo=CST)

# Why a message may be dead-lettered at the door. "unreadable" is not among them: it is the
# consumer's safety net for a parser that failed in a way nobody foresaw, i.e. a bug.
DOOR_REASONS = {"not_json", "too_deeply_nested", "invalid_envelope", "invalid_payload", "unknown_event_type",
                "unsupported_schema_version", "subject_mismatch", "oversized"}
REJECTIONS = (HouseholdRejected, ClaimRejected, SubsidyRejected, SubsidyPlanRequestRefused)


def _message(payload: DomainEvent, source: str = "county-test") -> EventMessage:
    return EventMessage.new(payload, source=source, occurred_at=OCCURRED)


# One valid message of every inbound event type, as county and insurer systems send them; claims
# name the family's policy, so that a mutated claim reaches the payment rules.
FAMILY = [m.resident_id for m in b.family()]
BASES: list[EventMessage] = [
    _message(b.registration()),
    _message(b.registration(b.member(), b.spouse(), b.child(), household_id="H2", units=3, renewal=True)),
    target(),
    _message(AreaRegistered(code="350421100", name="城关乡", level=AreaLevel.township, parent_code="350421")),
    _message(b.plan()),
    _message(SubsidyPlanCloseRequested(plan_id="HT-2024", closed_on=date(2024, 4, 30))),
    _message(b.death(FAMILY[0]), "insurer-test"),
    _message(b.disability(FAMILY[1], 3, claim_id="C2"), "insurer-test"),
    _message(b.medical(FAMILY[2], 500_000, social_insurance_fen=100_000, deductible_fen=10_000, ratio="0.8",
                       claim_id="C3"), "insurer-test"),
]
BASE_OF = {(m.event_type, getattr(m.payload, "kind", None)): m for m in BASES}


@dataclass
class Fate:
    """What became of one inbound message."""

    dead_letter: DeadLetter | None = None
    recorded: EventMessage | None = None
    decisions: list[DomainEvent] = field(default_factory=list)


def stored_and_read_back(event: EventMessage, stream_id: str) -> RecordedEvent:
    """The event as the log stores it (canonical UTC text, payload JSON, hashed as UTF-8) and as
    readers get it back: from the row, and from the relay's message on NATS."""
    payload = event.payload.model_dump_json()
    payload.encode("utf-8")  # what the hash chain and the database need
    row = {"position": 1, "event_id": str(event.event_id), "stream_id": stream_id, "stream_version": 1,
           "event_type": event.event_type, "schema_version": event.schema_version,
           "occurred_at": utc_text(event.occurred_at), "recorded_at": utc_text(datetime.now(timezone.utc)),
           "source": event.source, "correlation_id": str(event.correlation_id),
           "causation_id": str(event.causation_id) if event.causation_id else None, "payload": payload}
    recorded = registry.parse_recorded(row)
    assert recorded.payload == event.payload
    body = published_body(tuple(row[name] for name in ROW_FIELDS))  # what the relay sends
    published = registry.parse_published(event_subject(event.event_type), body)
    assert published.model_dump() == recorded.model_dump()
    return recorded


def subsidy_state() -> SubsidyState:
    """A published plan for 2024, and a policy deferred for 2025 (before that year's plan)."""
    state = SubsidyState()
    state.plans["HT-2024"] = PlanState(b.plan())
    state.plan_of_year[2024] = "HT-2024"
    state.deferred[2025] = [b.policy(year=2025, household_id="D1")]
    return state


def claims_state() -> ClaimsState:
    state = ClaimsState()
    evolve_claims(state, b.policy())
    return state


def decisions_of(event: EventMessage) -> list[DomainEvent]:
    """What the owning service decides, as its handler calls the decider."""
    payload = event.payload
    if isinstance(payload, HouseholdRegistered):
        outcome = decide_registration(payload, EnrollmentState())
        if isinstance(outcome, PolicyIssued):  # what subsidy and claims then do with the policy
            cover_from_policy(outcome)
            return [outcome, *decide_policy(outcome, subsidy_state())]
        return [outcome]
    if isinstance(payload, SubsidyPlanPublished):
        return list(decide_plan(payload, subsidy_state()))
    if isinstance(payload, SubsidyPlanCloseRequested):
        return list(decide_close(payload, subsidy_state()))
    if isinstance(payload, ClaimReported):
        return list(decide_claim(payload, claims_state(), paid_on=cst_date(event.occurred_at)))
    return []


def what_becomes_of(subject: str, body: bytes) -> Fate:
    kind, _ = split_inbound(subject) or ("", "")
    handler = ClaimsIntakeHandler() if kind == "insurer" else EnrollmentHandler()
    admitted = admit(handler, Incoming(subject=subject, body=body, headers={"Nats-Msg-Id": "m-1"},
                                       stream=inbound_stream("county"), sequence=7))
    if isinstance(admitted, DeadLetter):
        return Fate(dead_letter=admitted)
    stream = stream_of(admitted) if kind == "county" else f"claim-{admitted.payload.claim_id}"  # type: ignore[attr-defined]
    stored_and_read_back(admitted, stream)
    decided = decisions_of(admitted)
    for outcome in outcomes(admitted, decided, "fuzz"):
        stored_and_read_back(outcome, stream)
    return Fate(recorded=admitted, decisions=decided)


def assert_accounted_for(fate: Fate) -> None:
    if fate.dead_letter is not None:
        assert fate.dead_letter.reason in DOOR_REASONS, fate.dead_letter.detail
        assert fate.dead_letter.detail
        assert fate.dead_letter.nats_sequence == 7
        return
    assert fate.recorded is not None
    for decision in fate.decisions:
        if isinstance(decision, HouseholdRejected):
            assert decision.reasons and all(decision.reasons)
        elif isinstance(decision, REJECTIONS):
            assert decision.reason  # type: ignore[union-attr]


FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)


# -- every category of hostile input, on every inbound type --------------------------------------


@pytest.mark.parametrize("category", sorted(CATEGORIES))
@FUZZ
@given(base=st.sampled_from(BASES), rng=st.randoms(use_true_random=False))
def test_a_hostile_message_ends_as_a_dead_letter_with_a_reason_or_as_recorded_decisions(
    category: str, base: EventMessage, rng: random.Random
) -> None:
    message = hostile(rng, base, category)
    assert_accounted_for(what_becomes_of(message.subject, message.body))


@FUZZ
@given(base=st.sampled_from(BASES), rng=st.randoms(use_true_random=False),
       categories=st.lists(st.sampled_from(sorted(CATEGORIES)), min_size=2, max_size=4))
def test_several_mutations_of_one_message_still_end_as_a_dead_letter_or_recorded_decisions(
    base: EventMessage, rng: random.Random, categories: list[str]
) -> None:
    message = base
    body, subject = message.model_dump_json().encode(), subject_of(message_json(base))
    for category in categories:
        try:
            message = registry.parse_message(body)
        except EventContractError:
            break  # no longer an event to mutate further
        mutated = hostile(rng, message, category, fresh_id=False)
        subject, body = mutated.subject, mutated.body
    assert_accounted_for(what_becomes_of(subject, body))


@FUZZ
@given(base=st.sampled_from(BASES), rng=st.randoms(use_true_random=False),
       category=st.sampled_from(sorted(CATEGORIES)))
def test_a_contract_error_has_a_reason_code_and_names_the_fields_at_fault(
    base: EventMessage, rng: random.Random, category: str
) -> None:
    message: Hostile = hostile(rng, base, category)
    try:
        registry.parse_message(message.body)
    except EventContractError as exc:
        assert exc.code in DOOR_REASONS
        if exc.code not in ("not_json", "too_deeply_nested"):
            assert exc.fields, str(exc)
            assert all(f == "(root)" or f.split(".")[0] in EventMessage.model_fields or f.split(".")[0].endswith("_extra")
                       for f in exc.fields), exc.fields


# -- values drawn by hypothesis for the fields where the rules live ------------------------------


def with_payload(base: EventMessage, **changes: object) -> bytes:
    msg = message_json(base)
    msg["payload"].update(changes)
    return json.dumps(msg, ensure_ascii=False).encode()


REGISTRATION = BASES[0]
SUBJECT = subject_of(message_json(REGISTRATION))


def parsed_or_refused(body: bytes, expected_type: str | None) -> object:
    try:
        event = registry.parse_message(body, expected_type=expected_type)
    except EventContractError as exc:
        return ("refused", exc.code, str(exc), exc.fields)
    # The stored text too: equal values may serialise differently (Decimal("1") and Decimal("1.0")).
    return ("parsed", type(event), event, event.__pydantic_fields_set__, event.model_dump_json())


@pytest.mark.parametrize("category", sorted(CATEGORIES))
@FUZZ
@given(base=st.sampled_from(BASES), rng=st.randoms(use_true_random=False))
def test_parsing_with_the_type_the_subject_names_ends_as_parsing_without_it(
    category: str, base: EventMessage, rng: random.Random
) -> None:
    """The one-pass parse of a type named beforehand gives the same event or the same refusal."""
    message = hostile(rng, base, category)
    named = (split_inbound(message.subject) or ("", base.event_type))[1]
    assert parsed_or_refused(message.body, named) == parsed_or_refused(message.body, None)


@pytest.mark.parametrize(("change", "outcome"), [
    ({"schema_version": "2"}, "refused"), ({"schema_version": 2.0}, "refused"), ({"schema_version": True}, "refused"),
    ({"schema_version": 1}, "parsed"),  # an older version, brought up to date
    ({"correlation_id": None}, "parsed"),  # a conversation starts with its first event
    ({"event_type": "PolicyIssued"}, "refused"), ({"extra": 1}, "refused"),
    ({"payload": {"household_id": "H" * 81}}, "refused"),
])
def test_what_the_one_pass_parse_cannot_settle_is_parsed_the_general_way(change: dict[str, object], outcome: str) -> None:
    msg = message_json(REGISTRATION)
    for key, value in change.items():
        if key == "payload":
            msg["payload"].update(value)  # type: ignore[arg-type]
        else:
            msg[key] = value
    body = json.dumps(msg, ensure_ascii=False).encode()
    general = parsed_or_refused(body, None)
    assert parsed_or_refused(body, "HouseholdRegistered") == general
    assert general[0] == outcome, general
    if outcome == "parsed":
        event = general[2]  # type: ignore[index]
        assert event.schema_version == HouseholdRegistered.schema_version  # type: ignore[union-attr]
        assert event.correlation_id == REGISTRATION.correlation_id  # type: ignore[union-attr]


def test_a_registration_takes_the_one_pass_parse_and_a_claim_with_decimal_amounts_does_not() -> None:
    body = REGISTRATION.model_dump_json().encode()
    assert registry._message_of_type("HouseholdRegistered", body) == registry.parse_message(body)
    claim = BASE_OF[("ClaimReported", ClaimKind.medical)]
    # JSON numbers for a Decimal: read from the bytes or from json.loads's float, equal values may be
    # stored as different text (a plain Decimal field stores 1.0 as "1" one way and "1.0" the other).
    for ratio in ("1.0", "0.8", "1E+0", "0.1e1"):
        msg = message_json(claim)
        text = json.dumps(msg, ensure_ascii=False).replace(f'"payment_ratio": "{msg["payload"]["payment_ratio"]}"',
                                                            f'"payment_ratio": {ratio}')
        assert f'"payment_ratio": {ratio}' in text
        assert registry._message_of_type("ClaimReported", text.encode()) is None  # parsed the general way only
        assert parsed_or_refused(text.encode(), "ClaimReported") == parsed_or_refused(text.encode(), None)


@pytest.mark.parametrize("body", [
    b"\xef\xbb\xbf" + REGISTRATION.model_dump_json().encode(),  # a byte-order mark: json.loads takes it
    REGISTRATION.model_dump_json().replace("county-test", "county-\\ud800").encode(),  # a lone surrogate escape
])
def test_text_only_the_general_way_reads_is_still_read_or_refused_the_same(body: bytes) -> None:
    assert parsed_or_refused(body, "HouseholdRegistered") == parsed_or_refused(body, None)


@fuzz(300)
@given(paid_on=st.one_of(st.dates(), st.dates(min_value=date(9999, 1, 1)), st.dates(max_value=date(1, 12, 31))))
def test_a_registration_paid_on_any_day_of_the_calendar_is_decided_or_refused(paid_on: date) -> None:
    fate = what_becomes_of(SUBJECT, with_payload(REGISTRATION, paid_on=paid_on.isoformat()))
    assert_accounted_for(fate)
    assert fate.recorded is not None  # any calendar date fits the contract; the rules decide
    policy = fate.decisions[0]
    if isinstance(policy, PolicyIssued):
        assert policy.cover_start == start_of_day(paid_on + timedelta(days=1))


offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
instants = st.one_of(st.datetimes(timezones=offsets), st.datetimes(min_value=datetime(9999, 12, 30), timezones=offsets),
                     st.datetimes(max_value=datetime(1, 1, 2), timezones=offsets))


@fuzz(300)
@given(instant=instants, base=st.sampled_from(BASES))
def test_an_event_at_any_instant_is_stored_and_read_back_or_refused_naming_occurred_at(
    instant: datetime, base: EventMessage
) -> None:
    msg = message_json(base)
    msg["occurred_at"] = instant.isoformat()
    try:
        registry.parse_message(json.dumps(msg).encode())
    except EventContractError as exc:
        assert exc.code == "invalid_envelope" and exc.fields == ("occurred_at",)
    assert_accounted_for(what_becomes_of(subject_of(msg), json.dumps(msg).encode()))


@fuzz(200)
@given(name=st.one_of(st.sampled_from(SQL_AND_MARKUP), st.text(max_size=80)))
def test_any_member_name_is_insured_exactly_as_written_or_refused(name: str) -> None:
    members = message_json(REGISTRATION)["payload"]["members"]
    members[0]["name"] = name
    fate = what_becomes_of(SUBJECT, with_payload(REGISTRATION, members=members))
    assert_accounted_for(fate)
    if fate.recorded is not None:
        assert isinstance(fate.decisions[0], PolicyIssued)
        assert fate.decisions[0].insured[0].name == name
    else:
        assert fate.dead_letter is not None and fate.dead_letter.reason == "invalid_payload"


@fuzz(200)
@given(first17=st.text("0123456789", min_size=17, max_size=17), last=st.sampled_from("0123456789Xx"))
def test_an_id_number_whose_check_character_is_wrong_is_never_insured(first17: str, last: str) -> None:
    number = first17 + last
    members = message_json(REGISTRATION)["payload"]["members"]
    members[0]["resident_id"] = number
    fate = what_becomes_of(SUBJECT, with_payload(REGISTRATION, members=members))
    assert_accounted_for(fate)
    decision = fate.decisions[0]
    insured = decision.insured if isinstance(decision, PolicyIssued) else []
    for person in insured:
        parse_resident_id(person.resident_id)  # every insured number is a valid one
    try:
        parse_resident_id(number)
    except ValueError as exc:
        assert number.upper() not in [p.resident_id for p in insured]
        assert (number.upper(), getattr(exc, "code")) in [(e.resident_id, e.reason) for e in decision.excluded]


@fuzz(200)
@given(picks=st.lists(st.integers(0, 2), min_size=1, max_size=30))
def test_a_member_listed_twice_is_insured_once(picks: list[int]) -> None:
    family = message_json(REGISTRATION)["payload"]["members"]
    fate = what_becomes_of(SUBJECT, with_payload(REGISTRATION, members=[family[i] for i in picks]))
    assert_accounted_for(fate)
    policy = fate.decisions[0]
    assert isinstance(policy, PolicyIssued)
    numbers = [p.resident_id for p in policy.insured]
    assert sorted(numbers) == sorted({family[i]["resident_id"] for i in picks})
    assert [e.reason for e in policy.excluded] == ["duplicate_member"] * (len(picks) - len(numbers))


long_names = st.integers(1, 200).map(lambda n: "号" * n)


@fuzz(200)
@given(household_id=st.one_of(st.text(min_size=1, max_size=200), long_names),
       township=st.one_of(st.text(min_size=1, max_size=200), long_names))
def test_any_household_id_and_township_are_decided_or_refused(household_id: str, township: str) -> None:
    assert_accounted_for(what_becomes_of(SUBJECT, with_payload(REGISTRATION, household_id=household_id,
                                                               township=township)))


amounts = st.one_of(st.integers(-(2**70), 2**70), st.integers(0, 10**13))


@fuzz(300)
@given(expenses=amounts, social=amounts, deductible=amounts,
       ratio=st.decimals(min_value=-2, max_value=2, places=4, allow_nan=False, allow_infinity=False))
def test_a_medical_claim_with_any_amounts_is_paid_within_the_household_limit_or_refused(
    expenses: int, social: int, deductible: int, ratio: Decimal
) -> None:
    base = BASE_OF[("ClaimReported", ClaimKind.medical)]
    body = with_payload(base, expenses_fen=expenses, social_insurance_paid_fen=social, deductible_fen=deductible,
                        payment_ratio=str(ratio))
    fate = what_becomes_of(subject_of(message_json(base)), body)
    assert_accounted_for(fate)
    for decision in fate.decisions:
        if isinstance(decision, ClaimPaid):
            assert 0 <= decision.amount_fen <= b.PER_UNIT_MEDICAL_FEN


# -- found by fuzzing ----------------------------------------------------------------------------


def _registration_json() -> dict:
    return message_json(REGISTRATION)


def test_json_nested_deeper_than_the_recursion_limit_is_refused_as_too_deeply_nested() -> None:
    with pytest.raises(EventContractError) as caught:
        registry.parse_message(b"[" * 100_000 + b"]" * 100_000)
    assert caught.value.code == "too_deeply_nested"


def test_a_payload_nested_too_deeply_inside_a_valid_envelope_is_dead_lettered_not_raised() -> None:
    text = json.dumps(_registration_json()).replace('"chengguan-01"', '{"a":' * 20_000 + "1" + "}" * 20_000)
    fate = what_becomes_of(SUBJECT, text.encode())
    assert fate.dead_letter is not None and fate.dead_letter.reason == "too_deeply_nested"


def test_an_integer_too_long_to_read_is_refused_as_not_json() -> None:
    text = json.dumps(_registration_json()).replace('"units": 1', '"units": ' + "9" * 5_000)
    with pytest.raises(EventContractError) as caught:
        registry.parse_message(text.encode())
    assert caught.value.code == "not_json"


@pytest.mark.parametrize("instant", ["9999-12-31T23:00:00-12:00", "0001-01-01T00:00:00+14:00"])
def test_an_occurred_at_off_the_calendar_in_utc_is_an_invalid_envelope_naming_it(instant: str) -> None:
    msg = _registration_json()
    msg["occurred_at"] = instant
    with pytest.raises(EventContractError) as caught:
        registry.parse_message(json.dumps(msg))
    assert caught.value.code == "invalid_envelope" and caught.value.fields == ("occurred_at",)


@pytest.mark.parametrize("paid_on", [date(9999, 12, 31), date(9999, 1, 1)])
def test_a_registration_paid_in_the_year_9999_is_rejected_as_paid_on_out_of_range(paid_on: date) -> None:
    outcome = decide_registration(b.registration(paid_on=paid_on), EnrollmentState())
    assert isinstance(outcome, HouseholdRejected) and outcome.reasons == ["paid_on_out_of_range"]


@pytest.mark.parametrize("field", ["household_id", "township"])
def test_a_registration_key_too_long_to_become_part_of_a_stream_id_is_refused_naming_it(field: str) -> None:
    # 81 characters: "subsidy-P2024-<township>-<household>" must stay within the log's 200
    with pytest.raises(EventContractError) as caught:
        registry.parse_message(with_payload(REGISTRATION, **{field: "号" * 81}))
    assert caught.value.code == "invalid_payload" and caught.value.fields == (f"payload.{field}",)


class _BrokenParser(EnrollmentHandler):
    def parse(self, message: Incoming) -> EventMessage:
        raise RecursionError("a parser bug nobody foresaw")


def test_a_message_whose_parser_fails_unexpectedly_is_dead_lettered_as_unreadable_not_raised() -> None:
    message = Incoming(subject=SUBJECT, body=b"{}", headers={"Nats-Msg-Id": "m-9"}, stream=inbound_stream("county"), sequence=9)
    letter = admit(_BrokenParser(), message)
    assert isinstance(letter, DeadLetter)
    assert (letter.reason, letter.event_id, letter.nats_sequence) == ("unreadable", "m-9", 9)
    assert "RecursionError" in letter.detail
