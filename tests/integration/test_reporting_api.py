"""The reporting HTTP API and the dashboard, served for real and read by a client and by
headless Chromium (Debian's chromium package)."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.api import served_api


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API over a rebuilt Mingxi 2020 half-year, on a free port."""
    with served_api(tmp_path_factory.mktemp("api"), "/api/years") as base:
        yield base


def test_lists_the_programme_years(served: str) -> None:
    assert httpx.get(f"{served}/api/years").json() == [2020]


def test_serves_the_report_as_json_with_read_model_column_names(served: str) -> None:
    body = httpx.get(f"{served}/api/report", params={"year": 2020}).json()
    assert body["total"]["target_total"] == 7704
    assert body["total"]["policies"] == sum(t["policies"] for t in body["townships"])
    assert body["townships"][0]["township_name"] == "城关"
    assert 0.49 < body["total"]["completion_rate"] < 0.51
    assert "premium_fen" in body["total"] and "loss_ratio_denominator_fen" in body["total"]


def test_serves_one_township_as_csv(served: str) -> None:
    response = httpx.get(f"{served}/api/report", params={"year": 2020, "township": "机关", "format": "csv", "raw": 1})
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["township_name"] for r in rows] == ["机关", "合计"]
    assert rows[0]["target_government"] == "3000"


def test_refuses_bad_parameters_with_a_clear_error(served: str) -> None:
    assert httpx.get(f"{served}/api/report", params={"year": "soon"}).status_code == 422
    assert httpx.get(f"{served}/api/report", params={"year": 2020, "township": "nowhere"}).status_code == 404


def test_the_openapi_document_describes_only_read_operations(served: str) -> None:
    spec = httpx.get(f"{served}/openapi.json").json()
    assert "/api/report" in spec["paths"]
    methods = {m for path in spec["paths"].values() for m in path}
    assert methods == {"get"}


def test_the_dashboard_shows_the_township_rows_and_draws_its_charts_in_chromium(served: str, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: `make test` installs it (see .ci/run); apt-get install chromium")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2200"]
    url = f"{served}/dashboard?year=2020"
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert dom.count('class="township-row"') == 10
    for name in ("城关", "雪峰", "机关"):
        assert f"<td>{name}</td>" in dom
    for chart in ("chart-completion", "chart-payer", "chart-monthly"):
        assert f'id="{chart}"' in dom
    assert dom.count('class="bar"') >= 10 + 20 + 4
    shot = tmp_path / "dashboard.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000
    keep = os.environ.get("GUANHUAI_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / "dashboard.png")


def test_with_a_token_requests_without_it_are_refused_and_limits_apply(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from services.reporting.api import create_api

    app = create_api(f"sqlite:///{tmp_path / 'log.db'}", token="s3cret", rate_per_s=5)
    with TestClient(app) as client:
        assert client.get("/api/years").status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert client.get("/api/years", headers=ok).json() == []
        assert client.post("/api/years", headers=ok).status_code == 405
        assert client.get("/api/years?" + "x=1&" * 1000, headers=ok).status_code == 414
        spec = client.get("/openapi.json", headers=ok).json()
        assert spec["components"]["securitySchemes"]["HTTPBearer"] == {
            "type": "http", "scheme": "bearer", "description": "the API token (GUANHUAI_API_TOKEN)"}
        assert spec["paths"]["/api/report"]["get"]["security"] == [{"HTTPBearer": []}]
        assert "read-only" in spec["info"]["description"]
        codes = [client.get("/api/years", headers=ok).status_code for _ in range(30)]
        assert 429 in codes  # 5 a second, burst 10
