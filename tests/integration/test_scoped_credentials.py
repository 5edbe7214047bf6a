"""Each county sees only its own (issue #21), against a real nats-server with the shipped accounts
for several counties (infra/nats/permissions-counties.example.conf) and the real enrollment
process: a county's scoped credential publishes on its own subjects only, and enrollment records
households of its own townships only; another county's township is rejected ``area_not_permitted``
with the sender named."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guanhuai.embedded import free_port, nats_server_binary
from shared.events import EventMessage
from shared.events.programme import AreaLevel, AreaRegistered
from shared.events.subjects import inbound_subject, scoped_inbound_subject
from shared.events.tls import connect_nats
from tests.unit.builders import member, registration

INFRA = Path(__file__).resolve().parents[2] / "infra" / "nats"
USERS = ("COUNTY", "COUNTY_MINGXI", "COUNTY_HONGTA", "INSURER", "SERVICES", "READER", "OPERATOR", "ADMIN")


def password(user: str) -> str:
    return f"pw-{user.lower().replace('_', '-')}"


def test_the_example_is_permissions_conf_with_one_scoped_user_per_county() -> None:
    """The example does not drift from the shipped accounts: the same text, the scoped block added."""
    example = (INFRA / "permissions-counties.example.conf").read_text()
    shipped = (INFRA / "permissions.conf").read_text()
    start, end = "      # -- scoped counties:", "      # -- end of scoped counties --\n"
    scoped = example[example.index(start):example.index(end) + len(end)]
    assert example[example.index("\naccounts {"):].replace(scoped, "") == shipped[shipped.index("\naccounts {"):]
    assert scoped.count("user: county-") == 2
    assert 'allow: ["guanhuai.in.county.*"]' in shipped  # the unscoped user: one token, no scoped subject


@pytest.fixture
def province_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    (tmp_path / "permissions.conf").write_text((INFRA / "permissions-counties.example.conf").read_text())
    config = tmp_path / "server.conf"
    config.write_text(f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
                      'include "permissions.conf"\n')
    env = dict(os.environ, **{f"GUANHUAI_NATS_{user}_PASSWORD": password(user) for user in USERS})
    process = subprocess.Popen([nats_server_binary(), "-c", str(config)], env=env, stdout=subprocess.DEVNULL,
                               stderr=(tmp_path / "nats.log").open("wb"))
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline and process.poll() is None, (tmp_path / "nats.log").read_text()
            time.sleep(0.05)
    yield port
    process.terminate()
    process.wait(10)


async def connect_as(port: int, user: str, errors: list[str]):  # type: ignore[no-untyped-def]
    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    return await connect_nats(f"nats://{user}:{password(user.upper().replace('-', '_'))}@127.0.0.1:{port}",
                              error_cb=on_error, allow_reconnect=False)


def violations(errors: list[str]) -> int:
    return sum("permissions violation for publish" in e.lower() for e in errors)


async def test_a_scoped_county_credential_publishes_on_its_own_subjects_only(province_server: int) -> None:
    errors: list[str] = []
    services = await connect_as(province_server, "services", errors)
    js = services.jetstream()
    from shared.events.broker import ensure_streams

    await ensure_streams(js)
    mingxi = await connect_as(province_server, "county-mingxi", errors)
    ack = await mingxi.jetstream(timeout=5).publish(scoped_inbound_subject("county", "mingxi", "HouseholdRegistered"),
                                                    b"{}", headers={"Nats-Msg-Id": "m1"})
    assert ack.stream == "GUANHUAI_IN_COUNTY"
    for subject in (scoped_inbound_subject("county", "hongta", "HouseholdRegistered"),  # another county's
                    inbound_subject("county", "HouseholdRegistered"),  # the unscoped (any township)
                    scoped_inbound_subject("county", "mingxi", "AreaRegistered"),  # the province's
                    "guanhuai.in.county.mingxi.x.HouseholdRegistered"):
        await mingxi.publish(subject, b"{}")
    await mingxi.flush()
    county = await connect_as(province_server, "county", errors)  # the unscoped user may not speak for a county
    await county.publish(scoped_inbound_subject("county", "mingxi", "HouseholdRegistered"), b"{}")
    await county.flush()
    await asyncio.sleep(0.3)
    assert violations(errors) == 5, errors
    assert (await js.stream_info("GUANHUAI_IN_COUNTY")).state.messages == 1
    for nc in (mingxi, county, services):
        await nc.close()


def area(code: str, name: str, level: AreaLevel, parent: str | None = None) -> EventMessage:
    return EventMessage.new(AreaRegistered(code=code, name=name, level=level, parent_code=parent), source="province")


async def outcomes(db: Path) -> dict[str, object]:
    """Household id -> what enrollment recorded for it (PolicyIssued or HouseholdRejected)."""
    from shared.events.store import EventStore

    if not db.exists():
        return {}
    store = await EventStore.open(f"sqlite+aiosqlite:///{db}", create=False)
    try:
        return {e.payload.household_id: e.payload async for batch in store.read_all() for e in batch  # type: ignore[attr-defined]
                if e.event_type in ("PolicyIssued", "HouseholdRejected")}
    except Exception:  # noqa: BLE001 - the tables are not there yet
        return {}
    finally:
        await store.close()


async def test_enrollment_takes_a_countys_households_of_its_own_townships_only(province_server: int,
                                                                             tmp_path: Path) -> None:
    from tests.support.probes import probe

    env = dict(os.environ, GUANHUAI_NATS_URL=f"nats://services:{password('SERVICES')}@127.0.0.1:{province_server}",
               GUANHUAI_DB_URL=f"sqlite+aiosqlite:///{tmp_path / 'log.db'}", GUANHUAI_LOG_JSON="true")
    log = (tmp_path / "enrollment.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "guanhuai", "serve", "enrollment"], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    errors: list[str] = []
    province = await connect_as(province_server, "county", errors)
    mingxi = await connect_as(province_server, "county-mingxi", errors)
    hongta = await connect_as(province_server, "county-hongta", errors)
    services = await connect_as(province_server, "services", errors)
    try:
        deadline = time.monotonic() + 60
        while True:  # until enrollment has created its durable consumer
            try:
                await services.jetstream(timeout=2).consumer_info("GUANHUAI_IN_COUNTY", "enrollment-county-v1")
                break
            except Exception:  # noqa: BLE001 - not yet
                assert time.monotonic() < deadline and process.poll() is None, (tmp_path / "enrollment.log").read_text()[-2000:]
                await asyncio.sleep(0.2)
        # The province's operator registers both counties' trees; both have a 城关.
        tree = [area("mingxi", "明溪县", AreaLevel.county), area("hongta", "红塔区", AreaLevel.county),
                area("mx-chengguan", "城关", AreaLevel.township, "mingxi"),
                area("ht-chengguan", "城关", AreaLevel.township, "hongta"),
                area("ht-yuxi", "玉溪", AreaLevel.township, "hongta")]
        for message in tree:
            await province.jetstream(timeout=5).publish(inbound_subject("county", "AreaRegistered"),
                                                        message.model_dump_json().encode(),
                                                        headers={"Nats-Msg-Id": str(message.event_id)})
        sent = {  # household -> (sender, township as named)
            "MX-OWN-NAME": (mingxi, "mingxi", "城关"), "MX-OWN-CODE": (mingxi, "mingxi", "mx-chengguan"),
            "MX-HT-CODE": (mingxi, "mingxi", "ht-yuxi"), "MX-HT-NAME": (mingxi, "mingxi", "玉溪"),
            "HT-OWN": (hongta, "hongta", "城关"), "HT-MX-CODE": (hongta, "hongta", "mx-chengguan"),
        }
        for n, (household, (client, county, township)) in enumerate(sent.items()):
            one = member(sequence=100 + n)  # a person of their own: no household is refused for its members
            message = EventMessage.new(registration(one, household_id=household, township=township, village=None),
                                       source=f"{county}-county")
            await client.jetstream(timeout=5).publish(scoped_inbound_subject("county", county, "HouseholdRegistered"),
                                                      message.model_dump_json().encode(),
                                                      headers={"Nats-Msg-Id": str(message.event_id)})
        deadline = time.monotonic() + 60
        while len(recorded := await outcomes(tmp_path / "log.db")) < len(sent):
            assert time.monotonic() < deadline and process.poll() is None, (tmp_path / "enrollment.log").read_text()[-2000:]
            await asyncio.sleep(0.3)
    finally:
        process.terminate()
        process.wait(30)
        log.close()
        for nc in (province, mingxi, hongta, services):
            await nc.close()
    issued = {h: p.township for h, p in recorded.items() if type(p).__name__ == "PolicyIssued"}  # type: ignore[attr-defined]
    refused = {h: p for h, p in recorded.items() if type(p).__name__ == "HouseholdRejected"}
    probe("scoped_county_credentials", sent=len(sent), issued=len(issued), area_not_permitted=len(refused))
    assert issued == {"MX-OWN-NAME": "mx-chengguan", "MX-OWN-CODE": "mx-chengguan", "HT-OWN": "ht-chengguan"}
    assert {h: list(p.reasons) for h, p in refused.items()} == {  # type: ignore[attr-defined]
        h: ["area_not_permitted"] for h in ("MX-HT-CODE", "MX-HT-NAME", "HT-MX-CODE")}
    assert all("county-mingxi" in refused[h].detail for h in ("MX-HT-CODE", "MX-HT-NAME"))  # type: ignore[attr-defined]
    assert "county-hongta" in refused["HT-MX-CODE"].detail  # type: ignore[attr-defined]
    assert violations(errors) == 0
