"""What the reporting projection reads of each event: typed views of the published contracts,
holding only the fields the read models need (the other fields are skipped, not copied). Views
are validated like any contract; events stored under an older schema version are upcast through
the registry first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from shared.events import registry


class View(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AreaView(View):
    code: str
    name: str
    level: str
    parent_code: str | None = None
    aliases: list[str] = []


class TargetView(View):
    programme_year: int
    township: str
    target_total: int
    target_government: int
    target_self: int


class RejectionView(View):
    programme_year: int
    township: str
    reasons: list[str]


class _Insured(View):
    pass


class PolicyView(View):
    programme_year: int
    township: str
    payer: str
    premium_fen: int
    insured: list[_Insured]


class _Figures(View):
    township: str
    payer: str
    insured_persons: int
    premium_fen: int
    issued_at: datetime


class PolicyAmendedView(PolicyView):
    previous: _Figures


class PolicyCancelledView(View):
    programme_year: int
    previous: _Figures


class SubsidyView(View):
    programme_year: int
    township: str
    line: str
    amount_fen: int


class DisbursementView(View):
    programme_year: int
    plan_id: str
    persons: int
    amount_fen: int


class ClaimPaidView(View):
    programme_year: int
    township: str
    kind: str
    amount_fen: int
    deferred_on: date | None = None


class ClaimRejectedView(View):
    programme_year: int | None = None
    township: str | None = None
    deferred_on: date | None = None


class ClaimDeferredView(View):
    claim_id: str


VIEWS: dict[str, type[View]] = {
    "AreaRegistered": AreaView,
    "TownshipTargetSet": TargetView,
    "HouseholdRejected": RejectionView,
    "PolicyIssued": PolicyView,
    "PolicyAmended": PolicyAmendedView,
    "PolicyCancelled": PolicyCancelledView,
    "SubsidyApproved": SubsidyView,
    "SubsidyDisbursed": DisbursementView,
    "ClaimPaid": ClaimPaidView,
    "ClaimRejected": ClaimRejectedView,
    "ClaimDeferred": ClaimDeferredView,
}
EVENT_TYPES = tuple(VIEWS)


@dataclass(frozen=True, slots=True)
class Fact:
    """One event as the projection sees it."""

    position: int
    occurred_at: datetime
    data: View


_CURRENT: dict[str, int] = {}


def decode_row(position: int, event_type: str, schema_version: int, occurred_at: Any, payload: str) -> Fact | None:
    view = VIEWS.get(event_type)
    if view is None:
        return None
    when = datetime.fromisoformat(occurred_at) if isinstance(occurred_at, str) else occurred_at
    current = _CURRENT.get(event_type)
    if current is None:
        current = _CURRENT[event_type] = registry.payload_class(event_type).schema_version
    if schema_version != current:
        data = view.model_validate(registry.parse_payload(event_type, schema_version, payload).model_dump(mode="json"))
    else:
        data = view.model_validate_json(payload)
    return Fact(position, when, data)


_published: dict[str, type[BaseModel]] = {}


class _PositionOnly(View):
    position: int


def decode_published(event_type: str, body: bytes) -> Fact | int:
    """A recorded event as the relay publishes it (always the current schema version), or just
    its position when the projection has no view of its type."""
    view = VIEWS.get(event_type)
    if view is None:
        return _PositionOnly.model_validate_json(body).position
    model = _published.get(event_type)
    if model is None:
        model = _published[event_type] = create_model(
            f"Published{event_type}View", __base__=View, position=(int, ...), occurred_at=(datetime, ...), payload=(view, ...))
    parsed = model.model_validate_json(body)
    return Fact(parsed.position, parsed.occurred_at, parsed.payload)  # type: ignore[attr-defined]
