"""The registry of every event type the system knows, with the upcasters of older versions."""

from __future__ import annotations

from typing import Any

from . import claims, enrollment, programme, subsidy
from .registry import EventRegistry

registry = EventRegistry()

for _module in (programme, enrollment, subsidy, claims):
    for _obj in vars(_module).values():
        if isinstance(_obj, type) and getattr(_obj, "__module__", None) == _module.__name__ and "event_type" in vars(_obj):
            registry.register(_obj)


@registry.upcaster("HouseholdRegistered", from_version=1)
def _household_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 (the first county form) had one unit per household, no village, and ``consent_date``."""
    out = dict(payload)
    if "consent_date" in out:
        out["paid_on"] = out.pop("consent_date")
    out.setdefault("units", 1)
    return out
