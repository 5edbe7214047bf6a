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

import nats
import pytest

from guanhuai.embedded import free_port, nats_server_binary

INFRA = Path(__file__).resolve().parents[2] / "infra" / "nats"


@pytest.fixture
def secured_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    config = tmp_path / "server.conf"
    shutil.copy(INFRA / "permissions.conf", tmp_path / "permissions.conf")  # includes are relative to the file
    config.write_text(f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
                      'include "permissions.conf"\n')
    env = dict(os.environ, **{f"GUANHUAI_NATS_{who}_PASSWORD": f"pw-{who.lower()}"
                              for who in ("COUNTY", "INSURER", "SERVICES", "READER", "ADMIN")})
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

    return await nats.connect(f"nats://{user}:pw-{user}@127.0.0.1:{port}", error_cb=on_error, allow_reconnect=False)


async def test_a_county_credential_may_publish_county_events_only(secured_server: int) -> None:
    errors: list[str] = []
    services = await connect_as(secured_server, "services", errors)
    js = services.jetstream()
    from shared.events.broker import ensure_streams

    await ensure_streams(js)
    county = await connect_as(secured_server, "county", errors)
    ack = await county.jetstream().publish("guanhuai.in.county.HouseholdRegistered", b"{}", headers={"Nats-Msg-Id": "a"})
    assert ack.stream == "GUANHUAI_IN"

    await county.publish("guanhuai.in.insurer.ClaimReported", b"{}")
    await county.publish("guanhuai.events.PolicyIssued", b"{}")
    await county.flush()
    await asyncio.sleep(0.3)
    assert sum("permissions violation for publish" in e.lower() for e in errors) == 2
    info = await js.stream_info("GUANHUAI_IN")
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
            await destroy("GUANHUAI_IN")
    await services.flush()
    await asyncio.sleep(0.3)
    assert sum("permissions violation for publish" in e.lower() for e in errors) == 3
    assert (await js.stream_info("GUANHUAI_IN")).state.messages == 1  # still there, and nothing forged
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
                await js.consumer_info("GUANHUAI_IN", "enrollment-county-v1")
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
