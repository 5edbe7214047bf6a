"""The integration guide's promises: generated documents are current, and the plain nats-py
example really enrols a household."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from shared.events import registry
from shared.events import inbound
from shared.events.asyncapi import build_asyncapi
from shared.events.subjects import PRODUCER_EVENTS
from tests.support.pipeline import Pipeline

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_json_schemas_in_docs_are_the_ones_the_code_generates() -> None:
    for name, schema in registry.json_schemas().items():
        assert json.loads((DOCS / "schemas" / f"{name}.json").read_text(encoding="utf-8")) == schema, name


def test_the_asyncapi_document_in_docs_is_the_one_the_code_generates() -> None:
    assert json.loads((DOCS / "asyncapi.json").read_text(encoding="utf-8")) == build_asyncapi()


def test_the_guide_lists_every_inbound_event_with_its_fields_and_outcomes_as_the_code_has_them() -> None:
    guide = (DOCS / "integration.md").read_text(encoding="utf-8")
    assert inbound.with_inbound(guide) == guide, "run: guanhuai schema docs docs/integration.md"
    sent = {t for types in PRODUCER_EVENTS.values() for t in types}
    assert set(inbound.OUTCOMES) == sent
    assert {t for outcomes in inbound.OUTCOMES.values() for t in outcomes} <= set(registry.types)
    for event_type in sent:
        for field in registry.payload_class(event_type).model_fields:
            if field not in ("event_type", "schema_version"):
                assert f"| `{field}` |" in guide.split(f"#### `{event_type}`")[1].split("####")[0], (event_type, field)


async def test_the_plain_nats_py_example_enrols_a_household(pipeline: Pipeline) -> None:
    example = DOCS / "examples" / "publish_household.py"
    for _ in range(2):  # the second run is a harmless duplicate
        result = subprocess.run([sys.executable, str(example), pipeline.nats.url], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    assert "already there" in result.stdout
    counts = await pipeline.wait_for(lambda c: c["PolicyIssued"] == 1)
    counts = await pipeline.settled()
    assert counts["HouseholdRegistered"] == 1


async def test_the_plain_nats_py_example_waits_for_its_households_outcome(pipeline: Pipeline) -> None:
    example = DOCS / "examples" / "wait_for_outcome.py"
    for _ in range(2):  # the second run is a duplicate: the outcome is found among the older ones
        result = subprocess.run([sys.executable, str(example), pipeline.nats.url], capture_output=True, text=True, timeout=90)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "PolicyIssued P2024-chengguan-CG-0002: 2 insured, 0 left out" in result.stdout
    assert "(already there)" in result.stdout
