"""Operators' metrics: every component serves /metrics, /healthz and /readyz on its own port
(GUANHUAI_METRICS_PORT_<COMPONENT>), the API on its own app; the relay stops without a warning."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from guanhuai.embedded import free_port
from services.reporting.api import create_api
from tests.support.pipeline import COMPONENTS, Pipeline
from tests.support.programme import households, plan

SERVICE_CONSUMERS = {
    "enrollment": ("enrollment-county-v1",),
    "subsidy": ("subsidy-v1",),
    "claims": ("claims-v1", "claims-insurer-v1"),
    "reporting": ("reporting-v1",),
}


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, ""
    except urllib.error.URLError:
        return 0, ""  # nothing listening (yet)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(scraped: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in scraped.items() if n == name and labels.items() <= dict(ls).items())


def moved(component: str, scraped: dict) -> bool:
    if component == "relay":
        return (total(scraped, "guanhuai_events_published_total", event_type="PolicyIssued") >= 5
                and any(n == "guanhuai_relay_lag_events" for n, _ in scraped))
    consumers = SERVICE_CONSUMERS[component]
    return (sum(total(scraped, "guanhuai_messages_handled_total", consumer=c) for c in consumers) > 0
            and sum(total(scraped, "guanhuai_batch_duration_seconds_count", consumer=c) for c in consumers) > 0
            and all(any(n == "guanhuai_consumer_pending" and dict(ls).get("consumer") == c for n, ls in scraped)
                    for c in consumers))


async def test_every_component_serves_moving_metrics_health_and_readiness_and_the_relay_stops_without_a_warning(
        tmp_path: Path) -> None:
    ports = {name: free_port() for name in COMPONENTS}
    pipeline = Pipeline(tmp_path, f"sqlite:///{tmp_path / 'log.db'}")
    pipeline.extra_env = {f"GUANHUAI_METRICS_PORT_{name.upper()}": str(port) for name, port in ports.items()}
    try:
        await pipeline.start()
        await pipeline.publish("county", [plan(), *households(5)])
        await pipeline.wait_for(lambda c: c["PolicyIssued"] == 5)
        waiting, deadline = set(COMPONENTS), time.monotonic() + 30
        while waiting and time.monotonic() < deadline:
            for name in sorted(waiting):
                status, text = await asyncio.to_thread(get, f"http://127.0.0.1:{ports[name]}/metrics")
                if status == 200 and moved(name, samples(text)):
                    waiting.discard(name)
            await asyncio.sleep(0.5)
        assert not waiting, f"metrics did not move: {waiting}"
        for name, port in ports.items():
            for path in ("/healthz", "/readyz"):
                assert (await asyncio.to_thread(get, f"http://127.0.0.1:{port}{path}"))[0] == 200, (name, path)
    finally:
        await pipeline.stop()
    relay_log = next(p for p in pipeline.logs if p.name.startswith("relay"))
    lines = [json.loads(line) for line in relay_log.read_text().splitlines() if line.startswith("{")]
    assert lines  # the relay wrote its JSON lines
    assert [line for line in lines if line.get("level") in ("warning", "error", "critical")] == []


def test_the_api_serves_metrics_health_and_readiness_behind_its_token(tmp_path: Path) -> None:
    api = create_api(f"sqlite:///{tmp_path / 'log.db'}", token="s3cret")
    with TestClient(api) as client:
        assert client.get("/readyz").status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert client.get("/healthz", headers=auth).status_code == 200
        assert client.get("/readyz", headers=auth).status_code == 200
        scraped = client.get("/metrics", headers=auth)
        assert scraped.status_code == 200 and "python_info" in scraped.text
