"""What producers send and what it leads to: the inbound event types per producer kind, their
fields, and the events guanhuai answers them with. docs/integration.md lists them between
``<!-- inbound:start -->`` and ``<!-- inbound:end -->``, written from here by
``guanhuai schema docs docs/integration.md``; a test fails when the two drift apart."""

from __future__ import annotations

from typing import Any

from .catalog import registry
from .subjects import INBOUND_PREFIX, INBOUND_STREAMS, PRODUCER_EVENTS

# The events an inbound event leads to (besides itself, recorded under its producer-scoped id).
# Empty: it is recorded and read by the services as it is (areas, targets, terms, plans).
OUTCOMES: dict[str, tuple[str, ...]] = {
    "HouseholdRegistered": ("PolicyIssued", "HouseholdRejected", "SubsidyApproved", "SubsidyRejected",
                            "SubsidyDeferred"),
    "HouseholdCorrected": ("PolicyAmended", "CorrectionRefused"),
    "PolicyCancellationRequested": ("PolicyCancelled", "CorrectionRefused"),
    "TownshipTargetSet": (),
    "AreaRegistered": (),
    "ProductTermsPublished": (),
    "SubsidyPlanPublished": ("SubsidyPlanRequestRefused",),
    "SubsidyPlanCloseRequested": ("SubsidyDisbursed", "SubsidyPlanRequestRefused"),
    "ClaimReported": ("ClaimPaid", "ClaimRejected", "ClaimDeferred", "CoverEnded"),
}

DOCS_START = "<!-- inbound:start -->"
DOCS_END = "<!-- inbound:end -->"


def _type_of(prop: dict[str, Any]) -> str:
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return "one of " + ", ".join(f"`{v}`" for v in prop["enum"])
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " or ".join(_type_of(p) for p in prop["anyOf"])
    if prop.get("type") == "array":
        return f"list of {_type_of(prop.get('items', {}))}"
    return str(prop.get("format") or prop.get("type") or "object")


def _fields(event_type: str) -> list[str]:
    cls = registry.payload_class(event_type)
    schema = cls.model_json_schema(mode="validation")
    types: dict[str, list[str]] = {}
    for variant in schema.get("oneOf", [schema]):  # published per kind or level: what any variant takes
        for name, prop in variant.get("properties", {}).items():
            for said in _type_of(prop).split(" or "):
                if said not in types.setdefault(name, []):
                    types[name].append(said)
    rows = []
    for name, field in cls.model_fields.items():
        if name in ("event_type", "schema_version") or name not in types:
            continue
        described = (field.description or "").replace("|", "/").replace("\n", " ")
        rows.append(f"| `{name}` | {' or '.join(types[name])} | {'yes' if field.is_required() else 'no'} | {described} |")
    return rows


def markdown() -> str:
    lines = [DOCS_START, "<!-- written from shared/events/inbound.py by `guanhuai schema docs docs/integration.md`;"
             " do not edit by hand -->", "", "| you are | publish to (stream) | event types |", "| --- | --- | --- |"]
    who = {"county": "a county / district association system", "insurer": "the insurer's system"}
    for kind, types in PRODUCER_EVENTS.items():
        lines.append(f"| {who.get(kind, kind)} | `{INBOUND_PREFIX}.{kind}.<EventType>` (`{INBOUND_STREAMS[kind]}`) | "
                     + ", ".join(f"`{t}`" for t in types) + " |")
    for kind, types in PRODUCER_EVENTS.items():
        for event_type in types:
            answered = ", ".join(f"`{t}`" for t in OUTCOMES[event_type]) or "nothing more: it is recorded as sent"
            lines += ["", f"#### `{event_type}` ({kind})", "",
                      f"Subject `{INBOUND_PREFIX}.{kind}.{event_type}`; schema `docs/schemas/{event_type}.json`. "
                      f"Leads to: {answered}.", "", "| field | type | required | meaning |", "| --- | --- | --- | --- |",
                      *_fields(event_type)]
    return "\n".join([*lines, "", DOCS_END])


def with_inbound(document: str) -> str:
    start, end = document.index(DOCS_START), document.index(DOCS_END) + len(DOCS_END)
    return document[:start] + markdown() + document[end:]
