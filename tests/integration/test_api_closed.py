"""The reporting API is closed by default (issue #17, break 9): without a token it listens on
loopback only, a token guesser is rate-limited, and no input (a date at the end of the calendar,
a header in bytes that are no ASCII) makes it answer 500."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from guanhuai.embedded import free_port
from guanhuai.serve import check_api_exposure
from shared.settings import Settings
from services.reporting.api import create_api
from tests.support.probes import probe

TOKEN = "s3cret-token-for-tests"


def serve_api(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    environment = {k: v for k, v in os.environ.items() if k not in ("GUANHUAI_API_TOKEN", "GUANHUAI_API_PUBLIC")}
    environment.update(GUANHUAI_LOG_JSON="true", **env)
    return subprocess.Popen(
        [sys.executable, "-m", "guanhuai", "serve", "api", "--db-url", f"sqlite:///{tmp_path / 'log.db'}", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment)


def wait_for(process: subprocess.Popen[bytes], url: str, **headers: str) -> httpx.Response:
    deadline = time.monotonic() + 60
    while True:
        try:
            return httpx.get(url, headers=headers, timeout=1)
        except httpx.HTTPError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(process.communicate()[0].decode()) from None
            time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> str:
    process.terminate()
    return process.communicate(timeout=20)[0].decode()


def test_without_a_token_the_api_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    process = serve_api(tmp_path, "--port", str(free_port()), GUANHUAI_API_HOST="0.0.0.0")
    try:
        output = process.communicate(timeout=30)[0].decode()
    except subprocess.TimeoutExpired:  # it listens: open to the network
        process.kill()
        output = process.communicate()[0].decode()
    refused = process.returncode == 1
    probe("api_open_without_token", sent=1, refused=int(refused), listening=int(not refused))
    assert refused, output
    assert "GUANHUAI_API_TOKEN" in output and "--public" in output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1


def test_with_public_the_api_listens_beyond_loopback_and_says_so_in_a_warning(tmp_path: Path) -> None:
    port = free_port()
    process = serve_api(tmp_path, "--host", "0.0.0.0", "--port", str(port), "--public")
    assert wait_for(process, f"http://127.0.0.1:{port}/api/years").status_code == 200
    log = stop(process)
    assert '"event": "api_public_without_token"' in log and '"level": "warning"' in log, log


def test_with_a_token_the_api_listens_beyond_loopback_and_a_header_in_raw_bytes_is_a_401(tmp_path: Path) -> None:
    port = free_port()
    process = serve_api(tmp_path, "--port", str(port), GUANHUAI_API_HOST="0.0.0.0", GUANHUAI_API_TOKEN=TOKEN)
    try:
        assert wait_for(process, f"http://127.0.0.1:{port}/api/years", Authorization=f"Bearer {TOKEN}").status_code == 200
        codes = [httpx.get(f"http://127.0.0.1:{port}/api/years", headers={"Authorization": raw}).status_code
                 for raw in ("Bearer 令牌".encode(), b"Bearer \xff\xfe", "Bearer s3cr\xe9t".encode("latin-1"))]
    finally:
        stop(process)
    probe("api_non_ascii_authorization", sent=len(codes), refused_401=codes.count(401), errors_500=codes.count(500))
    assert codes == [401, 401, 401]


def test_the_loopback_rule_knows_loopback_addresses_and_names() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        check_api_exposure(Settings(api_host=host, api_token=None))  # allowed: nothing beyond this machine
    check_api_exposure(Settings(api_host="0.0.0.0", api_token=TOKEN))
    for host in ("0.0.0.0", "::", "192.168.1.10", "reports.example"):
        with pytest.raises(Exception, match="GUANHUAI_API_TOKEN"):
            check_api_exposure(Settings(api_host=host, api_token=None, api_public=False))


def test_wrong_tokens_count_against_the_rate_limit_so_a_guesser_gets_429(tmp_path: Path) -> None:
    with TestClient(create_api(f"sqlite:///{tmp_path / 'log.db'}", token=TOKEN, rate_per_s=5)) as client:
        codes = [client.get("/api/years", headers={"Authorization": f"Bearer guess-{i}"}).status_code for i in range(60)]
    probe("api_token_guessing", sent=len(codes), refused_401=codes.count(401), limited_429=codes.count(429),
          accepted=codes.count(200))
    assert codes.count(200) == 0
    assert codes.count(429) >= 40  # 5 a second with a burst of 10: most of 60 quick guesses are refused unheard


@pytest.mark.parametrize("params", [
    {"as_of": "9999-12-31"}, {"as_of": "0001-01-01"},
    {"known_at": "9999-12-31T23:59:59+14:00"}, {"known_at": "0001-01-01T00:00:00-12:00"},
    {"known_at": "9999-12-31T23:59:59"}, {"known_at": "0001-01-01T00:00:00+14:00"},
])
def test_a_cut_off_at_the_ends_of_the_calendar_is_a_clear_422_not_a_500(tmp_path: Path, params: dict[str, str]) -> None:
    with TestClient(create_api(f"sqlite:///{tmp_path / 'log.db'}"), raise_server_exceptions=False) as client:
        response = client.get("/api/report", params={"year": 2024, **params})
    probe("api_calendar_ends", sent=1, answered_422=int(response.status_code == 422),
          errors_500=int(response.status_code == 500))
    assert response.status_code == 422, response.text
    assert "must lie between 1900-01-01 and 2999-12-31" in response.json()["detail"]


def test_odd_headers_are_refused_without_a_500(tmp_path: Path) -> None:
    with TestClient(create_api(f"sqlite:///{tmp_path / 'log.db'}", token=TOKEN),
                    raise_server_exceptions=False) as client:
        ok = f"Bearer {TOKEN}"
        codes = [
            client.get("/api/years", headers={"Authorization": "Bearer 令牌".encode()}).status_code,
            client.get("/api/years", headers={"Authorization": b"Basic \xff"}).status_code,
            client.get("/api/years", headers={"Authorization": ok, "Content-Length": "abc"}).status_code,
            client.get("/api/years", headers={"Authorization": ok, "Content-Length": "-1"}).status_code,
        ]
    probe("api_odd_headers", sent=len(codes), errors_500=codes.count(500))
    assert codes == [401, 401, 413, 413]


@pytest.mark.parametrize("option", [["--as-of", "9999-12-31"], ["--known-at", "0001-01-01T00:00:00+14:00"], ["--as-of", "soon"]])
def test_the_report_command_refuses_a_cut_off_it_cannot_hold_in_one_line(tmp_path: Path, option: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "guanhuai", "report", "--year", "2024", *option,
                             "--db-url", f"sqlite:///{tmp_path / 'log.db'}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and option[0] in result.stderr
