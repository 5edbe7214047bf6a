"""The production NATS accounts (infra/nats/permissions.conf) confine each producer: a county
credential can publish county events and nothing else."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from guanhuai.embedded import free_port, nats_server_binary
from shared.events.tls import connect_nats

INFRA = Path(__file__).resolve().parents[2] / "infra" / "nats"


@pytest.fixture
def secured_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    config = tmp_path / "server.conf"
    shutil.copy(INFRA / "permissions.conf", tmp_path / "permissions.conf")  # includes are relative to the file
    config.write_text(f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
                      'include "permissions.conf"\n')
    env = dict(os.environ, **{f"GUANHUAI_NATS_{who}_PASSWORD": f"pw-{who.lower()}"
                              for who in ("COUNTY", "INSURER", "SERVICES", "READER", "OPERATOR", "ADMIN")})
    process = subprocess.Popen([nats_server_binary(), "-c", str(config)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    import socket

    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline and process.poll() is None, "nats-server did not start"
            time.sleep(0.05)
    yield port
    process.terminate()
    process.wait(10)


async def connect_as(port: int, user: str, errors: list[str]):  # type: ignore[no-untyped-def]
    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    # As guanhuai's own clients connect: with the credential's private inbox prefix.
    return await connect_nats(f"nats://{user}:pw-{user}@127.0.0.1:{port}", error_cb=on_error, allow_reconnect=False)


async def test_a_county_credential_may_publish_county_events_only(secured_server: int) -> None:
    errors: list[str] = []
    services = await connect_as(secured_server, "services", errors)
    js = services.jetstream()
    from shared.events.broker import ensure_streams

    await ensure_streams(js)
    county = await connect_as(secured_server, "county", errors)
    ack = await county.jetstream().publish("guanhuai.in.county.HouseholdRegistered", b"{}", headers={"Nats-Msg-Id": "a"})
    assert ack.stream == "GUANHUAI_IN_COUNTY"

    await county.publish("guanhuai.in.insurer.ClaimReported", b"{}")
    await county.publish("guanhuai.events.PolicyIssued", b"{}")
    await county.flush()
    await asyncio.sleep(0.3)
    assert sum("permissions violation for publish" in e.lower() for e in errors) == 2
    info = await js.stream_info("GUANHUAI_IN_COUNTY")
    assert info.state.messages == 1  # only the county event got in
    assert (await js.stream_info("GUANHUAI_EVENTS")).state.messages == 0
    await county.close()
    await services.close()


async def test_an_insurer_credential_may_not_publish_county_events(secured_server: int) -> None:
    errors: list[str] = []
    insurer = await connect_as(secured_server, "insurer", errors)
    await insurer.publish("guanhuai.in.county.HouseholdRegistered", b"{}")
    await insurer.flush()
    await asyncio.sleep(0.3)
    assert any("permissions violation for publish" in e.lower() for e in errors), errors
    await insurer.close()


async def test_a_services_credential_may_not_destroy_streams_nor_speak_for_a_producer(secured_server: int) -> None:
    errors: list[str] = []
    services = await connect_as(secured_server, "services", errors)
    js = services.jetstream(timeout=1)
    from shared.events.broker import ensure_streams

    await ensure_streams(js)
    county = await connect_as(secured_server, "county", errors)
    await county.jetstream().publish("guanhuai.in.county.HouseholdRegistered", b"{}", headers={"Nats-Msg-Id": "a"})
    await services.publish("guanhuai.in.county.HouseholdRegistered", b"{}")
    for destroy in (js.purge_stream, js.delete_stream):
        with pytest.raises(Exception):  # noqa: B017 - refused: no reply ever comes (a timeout)
            await destroy("GUANHUAI_IN_COUNTY")
    await services.flush()
    await asyncio.sleep(0.3)
    assert sum("permissions violation for publish" in e.lower() for e in errors) == 3
    assert (await js.stream_info("GUANHUAI_IN_COUNTY")).state.messages == 1  # still there, and nothing forged
    await county.close()
    await services.close()


async def test_the_services_run_with_the_services_credential(secured_server: int, tmp_path: Path) -> None:
    """Enrollment consumes a county event and the relay publishes what it recorded, both under
    the production permissions."""
    from tests.support.programme import households

    url = f"nats://services:pw-services@127.0.0.1:{secured_server}"
    env = dict(os.environ, GUANHUAI_NATS_URL=url, GUANHUAI_DB_URL=f"sqlite+aiosqlite:///{tmp_path / 'log.db'}",
               GUANHUAI_LOG_JSON="true")
    logs = [(tmp_path / f"{name}.log").open("wb") for name in ("enrollment", "relay")]
    processes = [subprocess.Popen([sys.executable, "-m", "guanhuai", "serve", name], env=env, stdout=log,
                                  stderr=subprocess.STDOUT) for name, log in zip(("enrollment", "relay"), logs)]
    errors: list[str] = []
    county = await connect_as(secured_server, "county", errors)
    services = await connect_as(secured_server, "services", errors)
    try:
        js = services.jetstream(timeout=2)
        deadline = time.monotonic() + 60
        while True:  # until enrollment has created its durable consumer
            try:
                await js.consumer_info("GUANHUAI_IN_COUNTY", "enrollment-county-v1")
                break
            except Exception:  # noqa: BLE001 - not yet
                assert time.monotonic() < deadline and all(p.poll() is None for p in processes), \
                    [(tmp_path / f"{n}.log").read_text()[-2000:] for n in ("enrollment", "relay")]
                await asyncio.sleep(0.2)
        reg = households(1, seed=5)[0]
        await county.jetstream().publish("guanhuai.in.county.HouseholdRegistered", reg.model_dump_json().encode(),
                                         headers={"Nats-Msg-Id": str(reg.event_id)})
        while (await js.stream_info("GUANHUAI_EVENTS")).state.messages < 2:  # the registration and its policy
            assert time.monotonic() < deadline and all(p.poll() is None for p in processes), \
                [(tmp_path / f"{n}.log").read_text()[-2000:] for n in ("enrollment", "relay")]
            await asyncio.sleep(0.2)
        assert not any("permissions violation" in e.lower() for e in errors)
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            p.wait(30)
        for log in logs:
            log.close()
        await county.close()
        await services.close()
    for name in ("enrollment", "relay"):
        assert "permissions violation" not in (tmp_path / f"{name}.log").read_text().lower()


def start_services(port: int, tmp_path: Path, *names: str) -> list[subprocess.Popen[bytes]]:
    url = f"nats://services:pw-services@127.0.0.1:{port}"
    env = dict(os.environ, GUANHUAI_NATS_URL=url, GUANHUAI_DB_URL=f"sqlite+aiosqlite:///{tmp_path / 'log.db'}",
               GUANHUAI_LOG_JSON="true")
    return [subprocess.Popen([sys.executable, "-m", "guanhuai", "serve", name], env=env,
                             stdout=(tmp_path / f"{name}.log").open("wb"), stderr=subprocess.STDOUT) for name in names]


async def recorded_count(tmp_path: Path, event_type: str) -> int:
    from shared.events.store import EventStore

    if not (tmp_path / "log.db").exists():
        return 0
    store = await EventStore.open(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}", create=False)
    try:
        return sum(e.event_type == event_type for batch in [b async for b in store.read_all()] for e in batch)
    except Exception:  # noqa: BLE001 - the tables are not there yet
        return 0
    finally:
        await store.close()


async def test_no_producer_nor_reader_receives_the_households_the_services_consume(secured_server: int,
                                                                                  tmp_path: Path) -> None:
    """Break 1 of issue #17: with nats' shared _INBOX prefix, a county, insurer or reader credential
    allowed `_INBOX.>` received every household the services pulled, resident ID numbers included."""
    from tests.support.probes import probe
    from tests.support.programme import households

    processes = start_services(secured_server, tmp_path, "enrollment")
    snooped: list[bytes] = []
    errors: list[str] = []
    snoopers = []
    for user in ("county", "insurer", "reader"):
        # An attacker's own client, with whatever prefix it likes: plain nats-py.
        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await nats.connect(f"nats://{user}:pw-{user}@127.0.0.1:{secured_server}", error_cb=on_error,
                                allow_reconnect=False)
        async def read(msg: Any) -> None:
            snooped.append(msg.data)

        for subject in ("_INBOX.>", "_INBOX_services.>", "guanhuai.in.>", ">"):
            await nc.subscribe(subject, cb=read)
        snoopers.append(nc)
    county = await connect_as(secured_server, "county", errors)
    services = await connect_as(secured_server, "services", errors)
    regs = households(5, seed=11)
    try:
        deadline = time.monotonic() + 60
        while True:  # until enrollment has created its durable consumer
            try:
                await services.jetstream(timeout=2).consumer_info("GUANHUAI_IN_COUNTY", "enrollment-county-v1")
                break
            except Exception:  # noqa: BLE001 - not yet
                assert time.monotonic() < deadline and processes[0].poll() is None, \
                    (tmp_path / "enrollment.log").read_text()[-2000:]
                await asyncio.sleep(0.2)
        for reg in regs:
            await county.jetstream(timeout=5).publish("guanhuai.in.county.HouseholdRegistered",
                                                       reg.model_dump_json().encode(),
                                                       headers={"Nats-Msg-Id": str(reg.event_id)})
        deadline = time.monotonic() + 60
        while (recorded := await recorded_count(tmp_path, "HouseholdRegistered")) < len(regs):
            assert time.monotonic() < deadline and processes[0].poll() is None, \
                (tmp_path / "enrollment.log").read_text()[-2000:]
            await asyncio.sleep(0.3)
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            p.wait(30)
        for nc in (*snoopers, county, services):
            await nc.close()
    ids = {m.resident_id for reg in regs for m in reg.payload.members}
    read_by_others = sum(any(i.encode() in body for i in ids) for body in snooped)
    probe("inbox_snooping", sent=len(regs), recorded=recorded, read_by_others=read_by_others)
    assert recorded == len(regs)
    assert snooped == []
    assert sum("permissions violation for subscription" in e.lower() for e in errors) == 12  # 3 users x 4 subjects


async def test_a_county_credential_gets_its_own_pub_ack_on_its_private_inbox_only(secured_server: int) -> None:
    errors: list[str] = []
    services = await connect_as(secured_server, "services", errors)
    from shared.events.broker import ensure_streams

    await ensure_streams(services.jetstream())
    county = await connect_as(secured_server, "county", errors)
    ack = await county.jetstream(timeout=5).publish("guanhuai.in.county.HouseholdRegistered", b"{}",
                                                    headers={"Nats-Msg-Id": "own-ack"})
    assert (ack.stream, ack.seq, bool(ack.duplicate)) == ("GUANHUAI_IN_COUNTY", 1, False)
    await county.subscribe("_INBOX.>")  # nats' shared inbox: refused
    await county.flush()
    await asyncio.sleep(0.3)
    assert [e for e in errors if "permissions violation" in e.lower()] == \
        ['nats: permissions violation for subscription to "_inbox.>"']
    await county.close()
    await services.close()


async def test_the_reader_cannot_create_a_consumer_on_events_that_carry_resident_ids(secured_server: int) -> None:
    from nats.js.api import ConsumerConfig

    errors: list[str] = []
    services = await connect_as(secured_server, "services", errors)
    from shared.events.broker import ensure_streams

    await ensure_streams(services.jetstream())
    reader = await connect_as(secured_server, "reader", errors)
    js = reader.jetstream(timeout=1)
    for event_type in ("HouseholdRegistered", "PolicyIssued", "ClaimReported", "HouseholdRejected"):
        with pytest.raises(Exception):  # noqa: B017 - refused: no answer ever comes
            await js.add_consumer("GUANHUAI_EVENTS", ConsumerConfig(
                name=f"snoop-{event_type}", filter_subject=f"guanhuai.events.{event_type}"))
    assert (await services.jetstream().stream_info("GUANHUAI_EVENTS")).state.consumer_count == 0
    await reader.close()
    await services.close()


def test_the_reader_may_subscribe_only_to_events_whose_payload_holds_no_resident_id() -> None:
    """The reader's list in permissions.conf, checked against the event models: an ID-carrying
    type added to it (or a model gaining an ID field) fails here."""
    import json
    import re

    from shared.events import registry

    text = (INFRA / "permissions.conf").read_text()
    reader = text[text.index("user: reader"):text.index("user: operator")]
    allowed = re.findall(r'"guanhuai\.events\.([A-Za-z]+)"', reader)
    assert allowed and "$JS" not in reader and "_INBOX" not in reader
    for event_type in allowed:
        schema = json.dumps(registry.payload_class(event_type).model_json_schema())
        assert "resident_id" not in schema and "[0-9]{17}" not in schema, event_type
