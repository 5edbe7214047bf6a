"""Events of the county / district association: the area hierarchy and yearly targets."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from .base import DomainEvent, Fen, Key, Ratio, one_variant_per  # Ratio: a decimal string as sent (see base.AsSent)

Year = Annotated[int, Field(ge=2000, le=2200, description="programme year (投保年度)")]
Count = Annotated[int, Field(ge=0, le=10_000_000)]


class AreaLevel(StrEnum):
    province = "province"  # 省/自治区
    city = "city"  # 市/州
    county = "county"  # 县/区
    township = "township"  # 乡镇/街道, or the pseudo-township 机关 for agencies
    village = "village"  # 村/社区


class AreaRegistered(DomainEvent):
    """An area of the associations' hierarchy (village -> township -> county -> city -> province),
    kept as data; reports roll up along it.

    Households and targets may name a township or village by its code, its name or one of its
    aliases. Registering a code again replaces what was registered for it; an area holds for every
    programme year until then. A county may name its city (a deployment of one county need not
    register the levels above it; registering the county again with a parent places it)."""

    # A province names no parent; a county may; every other area names one: one published schema per level.
    model_config = ConfigDict(json_schema_extra=one_variant_per("level", {
        "province": ((), ("parent_code",)), "city": (("parent_code",), ()), "county": ((), ()),
        "township": (("parent_code",), ()), "village": (("parent_code",), ())}))
    event_type = "AreaRegistered"

    code: Key
    name: str = Field(min_length=1, max_length=100)
    level: AreaLevel
    parent_code: Key | None = None
    aliases: list[Key] = Field(default=[], max_length=20, description="other names it goes by (e.g. 城关镇 for 城关)")

    @model_validator(mode="after")
    def _only_county_has_no_parent(self) -> AreaRegistered:
        if self.level is AreaLevel.province and self.parent_code is not None:
            raise ValueError("a province has no parent")
        if self.parent_code is None and self.level not in (AreaLevel.province, AreaLevel.county):
            raise ValueError("a province has no parent, a county may name one; every other area names one")
        return self


class TownshipTargetSet(DomainEvent):
    """The guiding target (指导性任务) of a township for a year, counted in policies (households)."""

    model_config = ConfigDict(json_schema_extra={"$comment": (
        "also refused (invalid_payload), which JSON Schema cannot state: target_government + target_self "
        "!= target_total")})
    event_type = "TownshipTargetSet"

    programme_year: Year
    township: Key = Field(description="area code of the township; or of a county, city or province: that area's own target, "
                                      "reported beside the sum of its townships' targets, never added into it")
    target_total: Count
    target_government: Count = Field(description="policies paid by the government (政府投保)")
    target_self: Count = Field(description="self-paid policies (自主投保)")

    @model_validator(mode="after")
    def _parts_add_up(self) -> TownshipTargetSet:
        if self.target_government + self.target_self != self.target_total:
            raise ValueError("target_government + target_self must equal target_total")
        return self


class ProductTermsPublished(DomainEvent):
    """The insurer's product terms in force for a programme year (e.g. the Mingxi 100-yuan version:
    100 yuan per unit, 200,000 yuan death/disability, 14,000 yuan medical shared by the household).

    Enrollment writes them on every policy of the year it issues after this (``PolicyIssued``);
    claims pay from the policy's terms. A year without terms gets the 100-yuan version with no
    deductible or ratio on the policy (the insurer then states both on each medical claim)."""

    event_type = "ProductTermsPublished"

    programme_year: Year
    product: str = Field(min_length=1, max_length=100, description="the product and version, e.g. 100元版")
    premium_per_unit_fen: Fen = Field(gt=0, description="premium per unit (份)")
    death_disability_per_unit_fen: Fen = Field(description="death/disability cover per unit, divided equally among the insured")
    medical_limit_per_unit_fen: Fen = Field(description="accident medical limit per unit, shared by the household for the year")
    deductible_fen: Fen = Field(description="accident medical deductible (免赔额) per claim")
    payment_ratio: Ratio = Field(description="accident medical payment ratio (给付比例), 0 to 1")
