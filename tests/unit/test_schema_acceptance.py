"""The published schemas (docs/schemas, from ``registry.json_schemas``) are the acceptance: what they
accept the system takes (refusing it, if at all, only by a business rule, as a recorded event), what
the system takes they accept, and every example in docs/ fits them.

Messages are drawn from the schemas themselves by :func:`from_schema`, a generator for the part of
JSON Schema that the schemas use ($ref, oneOf/anyOf, const/enum, patterns, formats, bounds)."""

from __future__ import annotations

import importlib.util
import json
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from services.claims.handlers import ClaimsIntakeHandler
from services.enrollment.handlers import EnrollmentHandler
from shared.events import EventContractError, EventMessage, registry
from shared.events.base import NAME_PATTERN
from shared.events.claims import ClaimKind, ClaimReported
from shared.events.consumer import Incoming, admit
from shared.events.inbox import DeadLetter
from shared.events.programme import AreaLevel, AreaRegistered
from shared.events.subjects import PRODUCER_EVENTS, inbound_stream, inbound_subject
from tests.support.events import target
from tests.unit import builders as b

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCHEMAS = registry.json_schemas()
INBOUND = [(kind, t) for kind, types in PRODUCER_EVENTS.items() for t in types]
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def validator(event_type: str) -> Draft202012Validator:
    return Draft202012Validator(SCHEMAS[event_type], format_checker=Draft202012Validator.FORMAT_CHECKER)


def fits(message: dict[str, Any]) -> list[str]:
    """Why ``message`` does not fit the schema of its type (nothing: it fits)."""
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(message["event_type"]).iter_errors(message)]


# -- drawing messages from a schema ------------------------------------------------------------

OFFSETS = st.integers(-12 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


def from_schema(schema: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        return from_schema(root["$defs"][schema["$ref"].rsplit("/", 1)[-1]], root)
    if "oneOf" in schema or "anyOf" in schema:
        return st.one_of([from_schema(s, root) for s in schema.get("oneOf", schema.get("anyOf"))])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low = max(schema.get("minimum", -(2**40)), schema.get("exclusiveMinimum", -(2**40)) + 1)
        return st.integers(low, schema.get("maximum", 2**40))
    if kind == "string":
        return _string(schema)
    if kind == "array":
        return st.lists(from_schema(schema["items"], root), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 4), 4))
    if kind == "object":
        props, required = schema["properties"], set(schema.get("required", ()))
        return st.fixed_dictionaries({k: from_schema(v, root) for k, v in props.items() if k in required},
                                     optional={k: from_schema(v, root) for k, v in props.items() if k not in required})
    raise AssertionError(f"the generator does not know {schema}")


def _string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    fmt = schema.get("format")
    if fmt == "date":
        return st.dates().map(date.isoformat)
    if fmt == "date-time":  # the calendar's ends, a day either side in UTC, are refused (see base.Instant)
        return st.datetimes(datetime(2, 1, 1), datetime(9998, 12, 31), timezones=OFFSETS).map(datetime.isoformat)
    if fmt == "uuid":
        return st.uuids().map(str)
    low, high = schema.get("minLength", 0), min(schema.get("maxLength", 30), 30)
    if schema.get("pattern") == NAME_PATTERN:
        return st.text(st.characters(exclude_categories=["Zs", "Zl", "Zp", "Cc", "Cs"]), min_size=max(low, 1),
                       max_size=high).filter(lambda s: re.search(NAME_PATTERN, s) is not None)
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: low <= len(s) <= schema.get("maxLength", 10**6))
    return st.text(min_size=low, max_size=high)


def _as_stated(message: dict[str, Any]) -> dict[str, Any]:
    """The rules JSON Schema cannot state, which each such schema names in its ``$comment``."""
    payload = message["payload"]
    if message["event_type"] == "TownshipTargetSet":
        payload["target_government"] = min(payload["target_government"], 10_000_000 - payload["target_self"])
        payload["target_total"] = payload["target_government"] + payload["target_self"]
    if message["event_type"] == "SubsidyPlanPublished":
        seen: set[str] = set()
        for line in payload["lines"]:
            line["categories"] = [c for c in dict.fromkeys(line["categories"]) if not (c in seen or seen.add(c))] or ["general"]
        if len([c for line in payload["lines"] for c in line["categories"]]) != len(
                {c for line in payload["lines"] for c in line["categories"]}):
            payload["lines"] = payload["lines"][:1]
    return message


def test_the_rules_json_schema_cannot_state_are_named_in_the_schemas() -> None:
    assert "target_total" in SCHEMAS["TownshipTargetSet"]["properties"]["payload"]["$comment"]
    assert "category" in SCHEMAS["SubsidyPlanPublished"]["properties"]["payload"]["$comment"]


@pytest.mark.parametrize(("kind", "event_type"), INBOUND)
@FEW
@given(data=st.data())
def test_a_message_the_schema_accepts_is_taken_never_dead_lettered(kind: str, event_type: str, data: st.DataObject) -> None:
    schema = SCHEMAS[event_type]
    message = _as_stated(data.draw(from_schema(schema, schema)))
    assert fits(message) == []  # the generator draws what the schema accepts
    handler = ClaimsIntakeHandler() if kind == "insurer" else EnrollmentHandler()
    body = json.dumps(message, ensure_ascii=False).encode()
    taken = admit(handler, Incoming(subject=inbound_subject(kind, event_type), body=body, headers={},
                                    stream=inbound_stream(kind), sequence=1))
    assert not isinstance(taken, DeadLetter), f"{taken.reason}: {taken.detail}"  # type: ignore[union-attr]


# -- what the system accepts fits the schema -----------------------------------------------------

NUMBERS = [m.resident_id for m in b.family()]
ratios = st.decimals(0, 1, places=4).map(str) | st.sampled_from(["0", "1", "0.8", "1.0000"])


@st.composite
def accepted_messages(draw: st.DrawFn) -> EventMessage:
    """Messages made from the builders and models, with drawn values, as producers send them."""
    number = draw(st.sampled_from(NUMBERS))
    day = draw(st.dates(date(2024, 6, 10), date(2024, 12, 1)))
    payload = draw(st.sampled_from([
        lambda: b.registration(*b.family()[: draw(st.integers(1, 3))], units=draw(st.integers(1, 100)),
                               renewal=draw(st.booleans()), household_id=draw(st.sampled_from(["H1", "CG-0001"]))),
        lambda: b.death(number, died=day),
        lambda: b.disability(number, draw(st.integers(1, 10)), assessed=day),
        lambda: ClaimReported.model_validate({
            **b.medical(number, draw(st.integers(0, 10**7))).model_dump(), "payment_ratio": draw(ratios),
            "deductible_fen": draw(st.none() | st.integers(0, 10**6))}),
        lambda: b.plan(),
        lambda: AreaRegistered(code="350421", name="明溪县", level=AreaLevel.county),
        lambda: AreaRegistered(code=draw(st.sampled_from(["350421100", "chengguan"])), name="城关乡",
                               level=draw(st.sampled_from([AreaLevel.township, AreaLevel.village])), parent_code="350421"),
    ]))()
    return EventMessage.new(payload, source="producer-test")


@FEW
@given(message=accepted_messages(), correlation=st.sampled_from(["kept", "null", "left out"]))
def test_a_message_the_system_accepts_fits_the_schema(message: EventMessage, correlation: str) -> None:
    sent = json.loads(message.model_dump_json())
    if correlation == "null":
        sent["correlation_id"] = None
    elif correlation == "left out":
        del sent["correlation_id"]
    registry.parse_message(json.dumps(sent))  # the system takes it
    assert fits(sent) == []


def test_the_target_builder_fits_the_schema() -> None:
    assert fits(json.loads(target().model_dump_json())) == []


# -- payment_ratio: the pattern and the parser agree -------------------------------------------

def claim_with_ratio(ratio: object) -> dict[str, Any]:
    sent = json.loads(EventMessage.new(b.medical(NUMBERS[0], 100_000), source="insurer-test").model_dump_json())
    sent["payload"]["payment_ratio"] = ratio
    return sent


@pytest.mark.parametrize("ratio", ["0", "1", "0.8", "0.8125", "1.0000", "0.0000"])
def test_a_payment_ratio_written_as_the_schema_says_is_taken(ratio: str) -> None:
    sent = claim_with_ratio(ratio)
    assert fits(sent) == []
    assert registry.parse_message(json.dumps(sent)).payload.payment_ratio == Decimal(ratio)  # type: ignore[attr-defined]


@pytest.mark.parametrize("ratio", ["90%", "0.80000", " 0.8", "+0.8", ".8", "8E-1", "-0", "1.5", "1.0001", 0.8, 1, "٠.٨"])
def test_a_payment_ratio_the_schema_refuses_is_refused_naming_it(ratio: object) -> None:
    sent = claim_with_ratio(ratio)
    assert fits(sent) != []
    with pytest.raises(EventContractError) as refused:
        registry.parse_message(json.dumps(sent, ensure_ascii=False).encode(), expected_type="ClaimReported")
    assert refused.value.code == "invalid_payload" and refused.value.fields == ("payload.payment_ratio",)


@FEW
@given(text=st.from_regex(r"[0-9.+\-eE ]{1,8}", fullmatch=True))
def test_any_ratio_text_is_taken_exactly_when_the_schema_accepts_it(text: str) -> None:
    sent = claim_with_ratio(text)
    try:
        registry.parse_message(json.dumps(sent))
        taken = True
    except EventContractError:
        taken = False
    assert taken == (fits(sent) == [])


# -- claim fields per kind -----------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "field", "value"), [
    ("death", "expenses_fen", 100), ("death", "disability_grade", 3), ("disability", "payment_ratio", "0.8"),
    ("medical", "disability_grade", 2),
])
def test_a_claim_carrying_a_field_of_another_kind_is_refused_by_the_schema_and_the_system(
    kind: str, field: str, value: object
) -> None:
    claim = {"death": b.death(NUMBERS[0]), "disability": b.disability(NUMBERS[0], 3),
             "medical": b.medical(NUMBERS[0], 100_000)}[kind]
    sent = json.loads(EventMessage.new(claim, source="insurer-test").model_dump_json())
    assert fits(sent) == []
    sent["payload"][field] = value
    assert fits(sent) != []
    with pytest.raises(EventContractError, match="invalid_payload|belong|only") as refused:
        registry.parse_message(json.dumps(sent))
    assert refused.value.code == "invalid_payload"


def test_each_kind_of_claim_is_one_variant_of_the_schema() -> None:
    variants = SCHEMAS["ClaimReported"]["properties"]["payload"]["oneOf"]
    assert [v["properties"]["kind"]["const"] for v in variants] == [k.value for k in ClaimKind]
    medical = variants[2]
    assert {"expenses_fen", "social_insurance_paid_fen"} <= set(medical["required"])
    assert variants[0]["properties"]["expenses_fen"] == {"type": "null", "description": "not for kind death: leave it out (or null)"}


def test_correlation_id_may_be_left_out_or_null_in_every_schema() -> None:
    for name, schema in SCHEMAS.items():
        assert "correlation_id" not in schema["required"], name
        assert {"type": "null"} in schema["properties"]["correlation_id"]["anyOf"], name


# -- the examples in docs/ -----------------------------------------------------------------------

def json_blocks(markdown: str) -> list[dict[str, Any]]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", markdown, flags=re.S)]


def example_events() -> list[tuple[str, dict[str, Any]]]:
    found = [(f"{doc.name} block {i}", block) for doc in sorted(DOCS.glob("*.md"))
             for i, block in enumerate(json_blocks(doc.read_text(encoding="utf-8"))) if "event_type" in block]
    for path in sorted((DOCS / "examples").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"docs_example_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        found += [(f"{path.name} {name}", value) for name, value in vars(module).items()
                  if isinstance(value, dict) and "event_type" in value]
    return found


def test_the_docs_hold_examples_of_events() -> None:
    names = [name for name, _ in example_events()]
    assert any(n.startswith("integration.md") for n in names) and any(n.startswith("publish_household.py") for n in names)


@pytest.mark.parametrize(("where", "event"), example_events(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_example_event_in_the_docs_fits_its_schema_and_is_taken(where: str, event: dict[str, Any]) -> None:
    assert fits(event) == [], where
    registry.parse_message(json.dumps(event, ensure_ascii=False))
