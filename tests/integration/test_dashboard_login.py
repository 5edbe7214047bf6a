"""A deployment with GUANHUAI_API_TOKEN used from a browser: the login form exchanges the token
for an HttpOnly session cookie (not the token itself), failed logins are rate limited like wrong
bearer tokens, and the dashboard and its data answer to the cookie; API clients keep the bearer."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.reporting.api import SESSION_COOKIE, create_api
from tests.support.api import served_api
from tests.support.probes import probe

TOKEN = "s3cret-dashboard-token"
HTML = {"accept": "text/html,application/xhtml+xml"}


def client_for(tmp_path: Path, *, rate_per_s: float = 50.0, base_url: str = "http://testserver") -> TestClient:
    app = create_api(f"sqlite:///{tmp_path / 'log.db'}", token=TOKEN, rate_per_s=rate_per_s)
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
    forged = [f"{int(expires) + 3600}.{signature}", f"{expires}.{'0' * len(signature)}", TOKEN, "", "9999999999.",
              "9" * 5000 + "." + signature]
    refused = 0
    for value in forged:
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, value)
        refused += client.get("/api/years").status_code == 401
    client.cookies.clear()
    for raw in (b"\xb2", "١٢".encode()):  # digits to str.isdigit that int() refuses, sent as raw header bytes
        forged.append(raw)
        header = SESSION_COOKIE.encode() + b"=" + raw + b"." + signature.encode()
        refused += client.get("/api/years", headers={"cookie": header}).status_code == 401
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


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
    NUL-terminated JSON, commands in on fd 3, answers and events out on fd 4), so a test can
    type into a form and press its button like a person would."""

    def __init__(self, chromium: str, profile: Path) -> None:
        to_browser, self.writer = os.pipe()
        self.reader, from_browser = os.pipe()

        def as_fds_3_and_4() -> None:  # in the child: move the pipe ends to the fds Chromium reads
            high_in, high_out = fcntl.fcntl(to_browser, fcntl.F_DUPFD, 10), fcntl.fcntl(from_browser, fcntl.F_DUPFD, 10)
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        self.process = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--window-size=1280,2200", "--remote-debugging-pipe", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=as_fds_3_and_4,
            close_fds=False)  # else fds 3 and 4 would be closed after preexec_fn; our own fds are close-on-exec (PEP 446)
        os.close(to_browser)
        os.close(from_browser)
        self.buffer, self.next_id, self.session = b"", 0, None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self.writer, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 60
        while True:  # skip events until our answer arrives
            while b"\0" not in self.buffer:
                if not select.select([self.reader], [], [], max(deadline - time.monotonic(), 0))[0]:
                    raise TimeoutError(f"chromium did not answer {method}")
                self.buffer += os.read(self.reader, 1 << 20)
            raw, _, self.buffer = self.buffer.partition(b"\0")
            answer = json.loads(raw)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str) -> None:
        deadline = time.monotonic() + 30
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(expression)
            time.sleep(0.1)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        if self.process.poll() is None:
            self.process.kill()
        os.close(self.writer)
        os.close(self.reader)


@pytest.fixture(scope="module")
def served_with_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API with GUANHUAI_API_TOKEN over a rebuilt Mingxi 2020 half-year, on a free port."""
    with served_api(tmp_path_factory.mktemp("api-token"), "/login", GUANHUAI_API_TOKEN=TOKEN) as base:
        yield base


def test_a_person_logs_in_through_the_form_in_chromium_and_sees_the_township_rows(served_with_token: str, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: `make test` installs it (see .ci/run); apt-get install chromium")
    browser = Browser(chromium, tmp_path / "profile")
    try:
        browser.call("Page.navigate", url=f"{served_with_token}/dashboard?year=2020")
        browser.wait_for("location.pathname === '/login' && document.readyState === 'complete'")  # sent to the form
        assert "访问令牌" in browser.evaluate("document.body.innerText")
        browser.evaluate(f"document.getElementById('token').value = {json.dumps(TOKEN)};"
                         "document.querySelector('form button[type=submit]').click()")
        browser.wait_for("location.pathname === '/dashboard' && document.readyState === 'complete'")
        dom = browser.evaluate("document.documentElement.outerHTML")
        assert browser.evaluate("document.cookie") == ""  # HttpOnly: page scripts cannot read the session
        shot = tmp_path / "dashboard-login.png"
        shot.write_bytes(base64.b64decode(browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]))
    finally:
        browser.close()
    assert dom.count('class="township-row"') == 10
    for name in ("城关", "雪峰", "机关"):
        assert f"<td>{name}</td>" in dom
    assert "数据截至" in dom.split('id="data-as-of"')[1].split("</p>")[0]
    monthly = dom.split('id="chart-monthly"')[1].split("</svg>")[0]  # axis values and bar values, no tooltip needed
    assert monthly.count('class="axis-value"') >= 2 and 'class="bar-value"' in monthly
    assert shot.stat().st_size > 20_000
    keep = os.environ.get("GUANHUAI_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / "dashboard-login.png")


def test_the_api_docs_load_their_assets_from_the_server_itself_and_not_from_a_cdn(client: TestClient) -> None:
    client.post("/login", data={"token": TOKEN})
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200
        assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""", html.text)
        urls = [a or b for a, b in assets]
        assert any(u.endswith(".js") for u in urls), urls
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", html.text), page  # no CDN, no web fonts
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), url
            assert client.get(url).status_code == 200, url
