"""Every reason code the system gives, in one place: code -> Chinese and English text, grouped by
where it applies.

The events' reason fields are typed from these groups (``Literal`` of their codes), so an event
with a code missing here cannot be made, the published JSON Schemas enumerate the codes, and
docs/integration.md's list is written from here (``guanhuai schema export``; a test fails on
drift). Result files, reports, the dashboard and ``guanhuai dlq list`` show the texts.

To add a code: add it to its group below (both texts), then run ``guanhuai schema export
docs/schemas`` and ``guanhuai schema asyncapi docs/asyncapi.json``. A code, once sent, is never
removed or renamed: the log keeps the events that carry it and reads them back with these types.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple


class Text(NamedTuple):
    zh: str
    en: str


# Members left out of a household's policy (``PolicyIssued.excluded``/``HouseholdRejected.excluded``).
MEMBER: dict[str, Text] = {
    "too_young": Text("未满投保年龄（保险期间首日出生未满 28 天）", "under 28 days old on the first day of cover"),
    "too_old": Text("首次投保超过 65 周岁", "over 65 on the first day of cover (new entrant)"),
    "too_old_renewal": Text("续保超过 70 周岁", "over 70 on the first day of cover (renewal)"),
    "id_malformed": Text("身份证号格式错误", "the resident ID number is malformed"),
    "id_bad_birth_date": Text("身份证号中的出生日期无效", "the birth date in the resident ID number is not a date"),
    "id_bad_check_character": Text("身份证号校验位错误", "the check character of the resident ID number is wrong"),
    "birth_date_mismatch": Text("出生日期与身份证号不符", "the birth date does not match the resident ID number"),
    "duplicate_member": Text("同一户内重复登记", "listed twice in the household"),
    "already_insured": Text("本年度已在其他保单中参保", "already insured this programme year on another policy"),
    "renewal_not_found": Text("称续保但上一年度未参保，按首次投保超过 65 周岁", "claimed as a renewal, not insured the previous programme year: over 65 as a new entrant"),
}

# Why a registration yields no policy (``HouseholdRejected.reasons``).
HOUSEHOLD: dict[str, Text] = {
    "no_eligible_member": Text("无符合条件的成员", "no member can be insured"),
    "household_already_insured": Text("本户本年度已参保", "the household is already insured this programme year"),
    "policy_number_taken": Text("保单号已被其他户占用", "the policy number is taken by another household"),
    "paid_on_out_of_range": Text("缴费日期超出可计算保险期间的范围", "the payment date is outside the range cover can be computed for"),
    "unknown_area": Text("乡镇或村未登记（或名称对应多个地区），请填写已登记的代码或名称", "the township or village is not registered (or its name names several areas): send a registered code or name"),
    "area_not_permitted": Text("发送方无权登记该地区的家庭（乡镇不属于本县）", "the sender may not register households of this area (the township is not one of its county's)"),
}

# Why a county's correction or cancellation changes nothing (``CorrectionRefused.reasons``, beside
# the codes of ``HOUSEHOLD`` when the corrected registration itself yields no policy).
CORRECTION_REFUSED: dict[str, Text] = {
    "correction_target_unknown": Text("所更正的登记不存在（本户本年度无此事件）", "the event it corrects is no registration of this household and year"),
    "correction_superseded": Text("所更正的登记已被后来的更正取代", "the registration it corrects was replaced by a later correction"),
    "no_policy_in_force": Text("本户本年度没有有效保单", "the household has no policy in force this programme year"),
    "cover_started": Text("保险期间已开始，只能更正姓名、身份证号和所属乡镇", "cover has started: only names, ID numbers and the area can be corrected"),
}

# Why a county cancels a policy before its cover starts (``PolicyCancellationRequested.reason``).
CANCELLATION: dict[str, Text] = {
    "registered_in_error": Text("误登记", "registered in error"),
    "household_withdrew": Text("投保家庭撤回投保", "the household withdrew before cover started"),
    "duplicate_registration": Text("重复登记", "the household was registered twice"),
}

# Why a claim is refused (``ClaimRejected.reason``).
CLAIM_REJECTED: dict[str, Text] = {
    "unknown_policy": Text("保单不存在（等待 30 天后仍未收到）", "no such policy (still unknown after 30 days)"),
    "not_insured_on_policy": Text("此人不在保单被保险人中", "the person is not insured on the policy"),
    "outside_cover": Text("事故不在保险期间内", "the accident is outside the cover period"),
    "cover_ended": Text("此人保障已终止", "the person's cover has ended"),
    "reported_before_accident": Text("报案日期早于事故日期", "reported before the accident happened"),
    "outcome_not_within_180_days": Text("身故或伤残评定不在事故后 180 日内", "death or the disability assessment is not within 180 days of the accident"),
    "limit_exhausted": Text("医疗保险金额已用完", "the household's medical limit is used up"),
    "duplicate_claim": Text("重复的理赔号", "a claim with this id was already decided"),
    "terms_mismatch": Text("理赔所报免赔额或给付比例与保单不符", "the claim's deductible or payment ratio differs from the policy's"),
    "terms_not_stated": Text("保单未载明免赔额和给付比例，理赔也未报送", "neither the policy nor the claim states the deductible and payment ratio"),
}

# Why a claim waits (``ClaimDeferred.reason``).
CLAIM_DEFERRED: dict[str, Text] = {
    "policy_not_yet_known": Text("保单尚未收到，收到后处理", "the policy is not known yet; decided when it arrives"),
}

# The limit that capped a payment (``ClaimPaid.limited_by``; absent when none did).
CLAIM_LIMITED_BY: dict[str, Text] = {
    "person_sum": Text("受个人身故伤残保险金额限制", "capped by the person's death/disability sum"),
    "household_medical_limit": Text("受全户医疗保险金额余额限制", "capped by the household's remaining medical limit"),
}

# Why a person's cover ends (``CoverEnded.reason``).
COVER_ENDED: dict[str, Text] = {
    "death": Text("被保险人身故", "the insured person died"),
    "disability_sum_exhausted": Text("伤残保险金已付满", "disability payments reached the person's sum"),
}

# Why a person gets no subsidy (``SubsidyRejected.reason``).
SUBSIDY_REJECTED: dict[str, Text] = {
    "not_in_plan": Text("所属类别不在补贴方案中", "the household's category is not in the plan"),
    "plan_closed": Text("补贴方案已关闭", "the plan is closed"),
    "already_subsidised": Text("本年度已获补贴", "already subsidised this programme year"),
    "head_cap_reached": Text("补贴人数已达上限", "the line's head-count cap is reached"),
    "budget_exhausted": Text("补贴预算已用完", "the line's budget is used up"),
    "premium_covered": Text("再补贴将超过本保单保费", "one more subsidy would take the policy's subsidies above its premium"),
}

# Why a plan request is refused (``SubsidyPlanRequestRefused.reason``).
PLAN_REFUSED: dict[str, Text] = {
    "plan_exists": Text("该方案编号已存在", "a plan with this id exists"),
    "year_has_plan": Text("该年度已有补贴方案", "the programme year has a plan already"),
    "unknown_plan": Text("补贴方案不存在", "no such plan"),
}

# Why an input was dead-lettered (``guanhuai dlq list``): the contract (registry), the consumer, JetStream.
DEAD_LETTER: dict[str, Text] = {
    "not_json": Text("不是 JSON", "not JSON"),
    "too_deeply_nested": Text("JSON 嵌套过深", "JSON nested too deeply"),
    "invalid_envelope": Text("信封字段不符合约定", "the envelope does not fit the contract"),
    "invalid_payload": Text("事件内容不符合约定", "the payload does not fit the contract"),
    "invalid_stored_event": Text("日志中的事件无法读取", "a stored event cannot be read"),
    "unknown_event_type": Text("未知的事件类型", "unknown event type"),
    "unsupported_schema_version": Text("不支持的事件版本", "unsupported schema version"),
    "subject_mismatch": Text("事件类型与主题不符", "the event type does not match its subject"),
    "unexpected_event_type": Text("此服务不接收该事件类型", "this service does not take this event type"),
    "oversized": Text("消息过大", "message too large"),
    "unreadable": Text("无法解析的消息", "the message could not be read"),
    "handler_error": Text("处理时出错", "the handler failed on it"),
    "max_deliveries": Text("多次投递仍未处理完成", "not acknowledged after the maximum deliveries"),
    "max_deliveries_message_gone": Text("多次投递失败且消息已不在流中", "given up, and the message is gone from its stream"),
}

GROUPS: dict[str, tuple[str, dict[str, Text]]] = {
    # group name -> (where it applies, its codes); the order of docs/integration.md's list
    "household": ("HouseholdRejected.reasons", HOUSEHOLD),
    "member": ("PolicyIssued.excluded[].reason, HouseholdRejected.excluded[].reason", MEMBER),
    "correction_refused": ("CorrectionRefused.reasons", CORRECTION_REFUSED),
    "cancellation": ("PolicyCancellationRequested.reason, PolicyCancelled.reason", CANCELLATION),
    "claim_rejected": ("ClaimRejected.reason", CLAIM_REJECTED),
    "claim_deferred": ("ClaimDeferred.reason", CLAIM_DEFERRED),
    "claim_limited_by": ("ClaimPaid.limited_by", CLAIM_LIMITED_BY),
    "cover_ended": ("CoverEnded.reason", COVER_ENDED),
    "subsidy_rejected": ("SubsidyRejected.reason", SUBSIDY_REJECTED),
    "plan_refused": ("SubsidyPlanRequestRefused.reason", PLAN_REFUSED),
    "dead_letter": ("dead letters (guanhuai dlq list)", DEAD_LETTER),
}


def codes(group: dict[str, Text]) -> Any:
    """A ``Literal`` of a group's codes, for an event's field: validated, and enumerated in its schema."""
    return Literal[tuple(group)]  # type: ignore[valid-type]


# The types of the events' reason fields.
MemberReason = codes(MEMBER)
HouseholdReason = codes(HOUSEHOLD)
CorrectionRefusedReason = codes(CORRECTION_REFUSED)
CancellationReason = codes(CANCELLATION)
ClaimRejectedReason = codes(CLAIM_REJECTED)
ClaimDeferredReason = codes(CLAIM_DEFERRED)
ClaimLimit = codes(CLAIM_LIMITED_BY)
CoverEndedReason = codes(COVER_ENDED)
SubsidyRejectedReason = codes(SUBSIDY_REJECTED)
PlanRefusedReason = codes(PLAN_REFUSED)


def text(code: str) -> Text:
    """The texts of a code, whatever its group; an unknown code reads as itself (never fails)."""
    for _where, group in GROUPS.values():
        if code in group:
            return group[code]
    return Text(code, code)


def zh(code: str) -> str:
    return text(code).zh


def en(code: str) -> str:
    return text(code).en


DOCS_START = "<!-- reasons:start -->"
DOCS_END = "<!-- reasons:end -->"


def markdown() -> str:
    """The catalogue as docs/integration.md lists it, between its markers."""
    lines = [DOCS_START, "<!-- written from shared/events/reasons.py by `guanhuai schema reasons docs/integration.md`;"
             " do not edit by hand -->"]
    for where, group in GROUPS.values():
        lines += ["", f"**{where}**", "", "| code | 中文 | English |", "|---|---|---|"]
        lines += [f"| `{code}` | {t.zh} | {t.en} |" for code, t in group.items()]
    return "\n".join([*lines, "", DOCS_END])


def with_catalogue(document: str) -> str:
    """``document`` with the text between its markers replaced by :func:`markdown`."""
    start, end = document.index(DOCS_START), document.index(DOCS_END) + len(DOCS_END)
    return document[:start] + markdown() + document[end:]
