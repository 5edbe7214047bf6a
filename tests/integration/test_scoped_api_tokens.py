"""Each county sees only its own (issue #21), against the real API (``guanhuai serve api`` over a
rebuilt log holding two counties): a county's token reads its own area and below, and gets 403,
never the figures, for another county's area, township, export or dashboard; an auditor's token
reads every area; the tokens file holds hashes only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from services.enrollment.handlers import EnrollmentHandler
from services.enrollment.tables import metadata as enrollment_tables
from services.reporting.tokens import Tokens, digest, main
from shared.events import EventMessage
from shared.events.consumer import Incoming, process_batch
from shared.events.inbox import metadata as inbox_tables
from shared.events.programme import AreaLevel, AreaRegistered
from shared.events.store import EventStore
from shared.events.subjects import inbound_subject
from tests.support.api import served_api
from tests.unit.builders import member, registration

MINGXI, HONGTA, AUDITOR = "mingxi-token-" + "m" * 30, "hongta-token-" + "h" * 30, "auditor-token-" + "a" * 30
HONGTA_TOWNSHIP = "玉溪街道"  # a name no Mingxi township has: seen in a page, it leaked


async def hongta_households(db_url: str) -> None:
    """A second county in the log before the Mingxi year is added: its area tree and two households."""
    store = await EventStore.open(db_url)
    await store.create_schema(inbox_tables, enrollment_tables)
    messages = [EventMessage.new(AreaRegistered(code="hongta", name="红塔区", level=AreaLevel.county), source="province"),
                EventMessage.new(AreaRegistered(code="ht-yuxi", name=HONGTA_TOWNSHIP, level=AreaLevel.township,
                                                parent_code="hongta"), source="province")]
    messages.append(EventMessage.new(AreaRegistered(code="ht-chengguan", name="城关", level=AreaLevel.township,
                                                    parent_code="hongta"), source="province"))  # Mingxi has a 城关 too
    messages += [EventMessage.new(registration(member(sequence=400 + n), household_id=f"HT-{n}", township=township,
                                               village=None, year=2020, paid_on=registration().paid_on.replace(year=2020)),
                                  source="hongta-district") for n, township in enumerate(["ht-yuxi", "ht-yuxi", "ht-chengguan"])]
    sent = [Incoming(subject=inbound_subject("county", m.event_type), body=m.model_dump_json().encode(),
                     headers={"Nats-Msg-Id": str(m.event_id)}, stream="GUANHUAI_IN_COUNTY", sequence=n)
            for n, m in enumerate(messages, 1)]
    await process_batch(store, EnrollmentHandler(), sent)
    await store.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    workdir = tmp_path_factory.mktemp("scoped-api")
    asyncio.run(hongta_households(f"sqlite:///{workdir / 'log.db'}"))
    tokens = workdir / "tokens"
    tokens.write_text(f"# scoped API tokens\nsha256:{digest(MINGXI)} county mingxi\nsha256:{digest(HONGTA)} county hongta\n"
                      f"sha256:{digest(AUDITOR)}   auditor  # the association's auditor\n")
    with served_api(workdir, "/login", GUANHUAI_API_TOKENS_FILE=str(tokens)) as base:
        yield base


def get(base: str, token: str, path: str) -> httpx.Response:
    return httpx.get(f"{base}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def names(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {row["township_name"] for row in response.json()["townships"]}


def test_a_county_token_reads_its_own_area_and_below(api: str) -> None:
    own = names(get(api, MINGXI, "/api/report?year=2020"))  # no area named: the token's own
    assert "城关" in own and HONGTA_TOWNSHIP not in own
    assert names(get(api, MINGXI, "/api/report?year=2020&area=mingxi&level=township")) == own
    assert names(get(api, HONGTA, "/api/report?year=2020")) == {HONGTA_TOWNSHIP, "城关"}


def rows(response: httpx.Response) -> list[tuple[str, int]]:
    assert response.status_code == 200, response.text
    return [(row["township"], row["policies"]) for row in response.json()["townships"]]


def test_a_township_name_two_counties_share_is_each_countys_own(api: str) -> None:
    """Both counties have a 城关: each county's token asking for 城关 gets its own, as the auditor
    sees it within that county."""
    mingxi = rows(get(api, MINGXI, "/api/report?year=2020&township=城关"))
    assert mingxi == rows(get(api, AUDITOR, "/api/report?year=2020&area=mingxi&township=城关"))
    assert [code for code, _ in mingxi] == ["chengguan"]
    assert rows(get(api, HONGTA, "/api/report?year=2020&township=城关")) == [("ht-chengguan", 1)]
    assert sorted(rows(get(api, AUDITOR, "/api/report?year=2020&township=城关"))) == sorted([*mingxi, ("ht-chengguan", 1)])


def test_a_county_token_gets_403_for_another_countys_area_never_the_figures(api: str) -> None:
    refused = ["/api/report?year=2020&area=hongta", "/api/report?year=2020&area=红塔区",
               "/api/report?year=2020&township=ht-yuxi", f"/api/report?year=2020&township={HONGTA_TOWNSHIP}",
               "/api/report?year=2020&area=hongta&format=csv", "/api/report?year=2020&area=hongta&format=csv&raw=true",
               "/api/report?year=2020&area=hongta&format=xlsx", "/dashboard?year=2020&area=hongta",
               "/api/report?year=2020&area=nowhere", "/metrics"]
    for path in refused:
        response = get(api, MINGXI, path)
        assert response.status_code == 403, (path, response.status_code)
        assert HONGTA_TOWNSHIP not in response.text and "ht-" not in response.text
    assert get(api, HONGTA, "/api/report?year=2020&area=mingxi").status_code == 403
    assert get(api, HONGTA, "/api/report?year=2020&township=chengguan").status_code == 403  # Mingxi's, by code
    assert get(api, MINGXI, "/api/report?year=2020&area=城关").status_code == 403  # an area: every namesake must be its own


def test_a_county_tokens_dashboard_and_exports_show_its_own_area(api: str) -> None:
    page = get(api, MINGXI, "/dashboard?year=2020")
    assert page.status_code == 200 and "城关" in page.text and HONGTA_TOWNSHIP not in page.text
    assert "红塔区" not in page.text  # nor in the area picker
    assert "红塔区" in get(api, AUDITOR, "/dashboard?year=2020").text
    csv = get(api, MINGXI, "/api/report?year=2020&format=csv&raw=true")
    assert csv.status_code == 200 and "chengguan" in csv.text and "ht-yuxi" not in csv.text and "ht-chengguan" not in csv.text


def test_a_county_token_signed_in_keeps_its_scope(api: str) -> None:
    with httpx.Client(base_url=api, timeout=30) as browser:
        assert browser.post("/login", data={"token": MINGXI}).status_code == 303
        assert browser.get("/dashboard?year=2020&area=hongta").status_code == 403
        page = browser.get("/dashboard?year=2020")
        assert page.status_code == 200 and HONGTA_TOWNSHIP not in page.text


def test_an_auditor_token_reads_every_area(api: str) -> None:
    every = names(get(api, AUDITOR, "/api/report?year=2020"))
    assert {"城关", HONGTA_TOWNSHIP} <= every
    assert names(get(api, AUDITOR, "/api/report?year=2020&area=hongta&level=township")) == {HONGTA_TOWNSHIP, "城关"}
    assert get(api, AUDITOR, "/api/report?year=2020&area=mingxi").status_code == 200
    assert httpx.post(f"{api}/api/report?year=2020", headers={"Authorization": f"Bearer {AUDITOR}"}).status_code == 405
    assert get(api, "not-a-token", "/api/report?year=2020").status_code == 401


def test_the_tokens_file_holds_hashes_and_a_bad_line_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["county", "mingxi"]) == 0
    out = capsys.readouterr().out
    token = out.split("it is not stored): ")[1].split()[0]
    line = out.split("GUANHUAI_API_TOKENS_FILE: ")[1].strip()
    assert token not in line
    (tmp_path / "tokens").write_text(line + "\n")
    scope = Tokens.read(tmp_path / "tokens").scope_of(token.encode())
    assert scope is not None and (scope.role, scope.area) == ("county", "mingxi")
    for bad in ("sha256:abc county mingxi", f"sha256:{digest('x')} county", f"sha256:{digest('x')} auditor mingxi",
                f"{token} county mingxi", f"sha256:{digest('x')} admin"):
        (tmp_path / "tokens").write_text(bad + "\n")
        with pytest.raises(ValueError):
            Tokens.read(tmp_path / "tokens")
