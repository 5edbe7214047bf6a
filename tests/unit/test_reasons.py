"""The reason catalogue (shared/events/reasons.py): every code the system gives is in it, the events
and their schemas take only its codes, and the docs and `dlq list` show its texts."""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from shared.events import reasons, registry
from shared.events.claims import ClaimRejected

ROOT = Path(__file__).resolve().parents[2]
CODE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
# The calls and names that carry a reason code in the deciders, the domain rules and the consumer.
REASON_CALLS = {"reject", "_rejected", "paid", "cover_ended"}  # any argument may be the code
CODE_ARGUMENT = {"Rejected": 0, "EventContractError": 0, "ResidentIdError": 0, "dead_letter_of": 2}  # this one is
REASON_NAMES = {"reason", "reasons", "code", "limited_by", "REASON", "GONE_REASON"}
DECIDING = ["services/enrollment/decider.py", "services/claims/decider.py", "services/subsidy/decider.py",
            "shared/domain/calendar.py", "shared/domain/identity.py"]
DEAD_LETTERING = ["shared/events/consumer.py", "shared/events/given_up.py", "shared/events/registry.py",
                  "services/enrollment/handlers.py", "services/claims/handlers.py", "services/subsidy/handlers.py",
                  "services/reporting/handlers.py"]


def _constants(node: ast.AST) -> set[str]:
    """The code-like string constants in an expression, leaving out f-strings (messages)."""
    if isinstance(node, ast.JoinedStr):
        return set()
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value} if CODE.match(node.value) else set()
    return set().union(*(_constants(child) for child in ast.iter_child_nodes(node)))


def codes_given_by(path: str) -> set[str]:
    """The reason codes a source file passes, assigns or returns as reasons."""
    found: set[str] = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name in REASON_CALLS:
                for arg in node.args:
                    found |= _constants(arg)
            if name in CODE_ARGUMENT and len(node.args) > CODE_ARGUMENT[name]:
                found |= _constants(node.args[CODE_ARGUMENT[name]])
            found |= set().union(*(_constants(k.value) for k in node.keywords if k.arg in REASON_NAMES))
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) in REASON_NAMES - {"code"} for t in node.targets):
            found |= _constants(node.value)
        elif isinstance(node, ast.FunctionDef) and "refusal" in node.name:
            for inner in ast.walk(node):
                if isinstance(inner, ast.Return) and inner.value is not None:
                    found |= _constants(inner.value)
    return found


def test_every_reason_code_the_deciders_give_is_in_the_catalogue() -> None:
    given = set().union(*(codes_given_by(p) for p in DECIDING))
    assert {"too_old_renewal", "id_bad_check_character", "person_sum", "outcome_not_within_180_days",
            "plan_exists", "no_eligible_member"} <= given  # the scan itself finds what it looks for
    catalogued = set().union(*(group for where, group in reasons.GROUPS.values() if group is not reasons.DEAD_LETTER))
    assert given - catalogued == set()


def test_every_dead_letter_reason_is_in_the_catalogue() -> None:
    given = set().union(*(codes_given_by(p) for p in DEAD_LETTERING))
    assert {"not_json", "oversized", "max_deliveries", "subject_mismatch", "invalid_stored_event"} <= given
    assert given - set(reasons.DEAD_LETTER) == set()


def test_every_code_has_a_chinese_and_an_english_text() -> None:
    for where, group in reasons.GROUPS.values():
        for code, text in group.items():
            assert CODE.match(code), code
            assert re.search(r"[\u4e00-\u9fff]", text.zh) and text.en.isascii() and text.en, (where, code)


def test_the_json_schemas_enumerate_the_catalogue_codes() -> None:
    schemas = registry.json_schemas()

    def payload(name: str) -> dict:
        return schemas[name]["properties"]["payload"]

    assert payload("HouseholdRejected")["properties"]["reasons"]["items"]["enum"] == list(reasons.HOUSEHOLD)
    assert payload("ClaimRejected")["properties"]["reason"]["enum"] == list(reasons.CLAIM_REJECTED)
    assert payload("SubsidyRejected")["properties"]["reason"]["enum"] == list(reasons.SUBSIDY_REJECTED)
    limited_by = payload("ClaimPaid")["properties"]["limited_by"]["anyOf"]
    assert {"enum": list(reasons.CLAIM_LIMITED_BY), "type": "string"} in limited_by
    assert "already_insured_this_year" not in str(schemas)  # the old example the system never sent


def test_an_event_with_a_code_missing_from_the_catalogue_cannot_be_made() -> None:
    with pytest.raises(ValidationError, match="reason"):
        ClaimRejected(claim_id="C1", policy_number="P1", resident_id="11010519491231002X", kind="death",
                      reason="because_i_said_so")


def test_the_reason_list_in_integration_md_is_the_catalogue() -> None:
    document = (ROOT / "docs" / "integration.md").read_text(encoding="utf-8")
    assert reasons.markdown() in document, "run: guanhuai schema reasons docs/integration.md"
    assert "| `too_old_renewal` | 续保超过 70 周岁 |" in document


def test_the_docs_rewriter_replaces_only_the_marked_block() -> None:
    stale = f"before\n{reasons.DOCS_START}\n| `old` | x | y |\n{reasons.DOCS_END}\nafter\n"
    rewritten = reasons.with_catalogue(stale)
    assert rewritten.startswith("before\n") and rewritten.endswith("\nafter\n")
    assert "`old`" not in rewritten and "`household_already_insured`" in rewritten


def test_an_unknown_code_reads_as_itself() -> None:
    assert reasons.text("from_a_newer_version") == ("from_a_newer_version", "from_a_newer_version")


def test_dlq_list_shows_the_chinese_text_beside_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from guanhuai.cli import app
    from shared.events.inbox import DeadLetter, record_dead_letters
    from shared.events.inbox import metadata as inbox_metadata
    from shared.events.store import EventStore

    url = f"sqlite:///{tmp_path / 'log.db'}"

    async def one_dead_letter() -> None:
        store = await EventStore.open(url)
        await store.create_schema(inbox_metadata)
        with store.transaction() as tx:
            record_dead_letters(tx.connection, [DeadLetter(
                consumer="enrollment", nats_stream="GUANHUAI_IN_COUNTY", nats_sequence=1,
                subject="guanhuai.in.county.HouseholdRegistered", headers={}, body=b"{", reason="not_json",
                detail="message is not JSON")])
        await store.close()

    asyncio.run(one_dead_letter())
    monkeypatch.setenv("GUANHUAI_DB_URL", url)
    monkeypatch.setenv("COLUMNS", "250")
    result = CliRunner().invoke(app, ["dlq", "list"])
    assert result.exit_code == 0, result.output
    assert "not_json" in result.output and "不是 JSON" in result.output
