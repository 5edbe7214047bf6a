"""A deployment with GUANHUAI_API_TOKEN used from a browser: the login form exchanges the token
for an HttpOnly session cookie (not the token itself), failed logins are rate limited like wrong
bearer tokens, and the dashboard and its data answer to the cookie; API clients keep the bearer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.reporting.api import SESSION_COOKIE, create_api
from tests.support.probes import probe

TOKEN = "s3cret-dashboard-token"
HTML = {"accept": "text/html,application/xhtml+xml"}


def client_for(tmp_path: Path, *, rate_per_s: float = 50.0, base_url: str = "http://testserver") -> TestClient:
    app = create_api(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}", token=TOKEN, rate_per_s=rate_per_s)
    return TestClient(app, base_url=base_url, follow_redirects=False)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with client_for(tmp_path) as c:
        yield c


def test_a_browser_without_a_session_is_sent_to_the_login_form_and_an_api_client_gets_401(client: TestClient) -> None:
    page = client.get("/dashboard", headers=HTML)
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert client.get("/api/years").status_code == 401
    form = client.get("/login")
    assert form.status_code == 200
    assert "访问令牌" in form.text and "access token" in form.text and 'type="password"' in form.text


def test_a_wrong_token_sets_no_cookie_and_counts_against_the_rate_limit(tmp_path: Path) -> None:
    with client_for(tmp_path, rate_per_s=1.0) as c:  # a burst of 2
        answers = [c.post("/login", data={"token": f"guess-{i}"}) for i in range(4)]
    codes = [a.status_code for a in answers]
    assert codes[:2] == [401, 401] and 429 in codes[2:]
    assert all("set-cookie" not in a.headers for a in answers)
    assert "令牌不对" in answers[0].text
    probe("login_guessing", sent=len(answers), refused=codes.count(401), limited=codes.count(429),
          cookies=sum("set-cookie" in a.headers for a in answers))


def test_the_right_token_gives_an_httponly_strict_cookie_that_opens_the_dashboard_and_its_data(client: TestClient) -> None:
    login = client.post("/login", data={"token": TOKEN})
    assert login.status_code == 303 and login.headers["location"] == "/dashboard"
    cookie = login.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    assert TOKEN not in cookie  # an HMAC under a start-up key, not the token
    page = client.get("/dashboard", headers=HTML)
    assert page.status_code == 200 and "数据截至" in page.text and "/logout" in page.text
    assert client.get("/api/years").status_code == 200
    assert client.get("/api/report", params={"year": 2020}).status_code == 200


def test_a_forged_or_altered_session_cookie_is_refused(client: TestClient) -> None:
    login = client.post("/login", data={"token": TOKEN})
    good = login.cookies[SESSION_COOKIE]
    expires, _, signature = good.partition(".")
    forged = [f"{int(expires) + 3600}.{signature}", f"{expires}.{'0' * len(signature)}", TOKEN, "", "9999999999."]
    refused = 0
    for value in forged:
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, value)
        refused += client.get("/api/years").status_code == 401
    assert refused == len(forged)
    probe("forged_session_cookie", sent=len(forged), refused=refused, accepted=len(forged) - refused)


def test_logging_out_clears_the_cookie(client: TestClient) -> None:
    client.post("/login", data={"token": TOKEN})
    out = client.post("/logout")
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert f'{SESSION_COOKIE}=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    assert client.get("/dashboard", headers=HTML).status_code == 303


def test_the_cookie_is_secure_when_served_over_https(tmp_path: Path) -> None:
    with client_for(tmp_path, base_url="https://testserver") as c:
        assert "Secure" in c.post("/login", data={"token": TOKEN}).headers["set-cookie"]


def test_api_clients_keep_the_bearer_token_and_other_posts_stay_refused(client: TestClient) -> None:
    bearer = {"authorization": f"Bearer {TOKEN}"}
    assert client.get("/api/years", headers=bearer).status_code == 200
    assert client.post("/api/report", headers=bearer).status_code == 405
    assert client.post("/login", content=b"token=" + b"x" * 5000,
                       headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 413
