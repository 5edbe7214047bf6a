"""Resident ID numbers in what the real processes write (issue #17, break 6): a service fed IDs in
a producer's headers and in bodies that are dead-lettered with long details, every library
logging at DEBUG, writes no ID whole and no front part of one; FastStream's own lines are masked
JSON lines like the service's; the API's access line for a URL carrying an ID is masked."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import pytest

from shared.domain.identity import make_resident_id
from shared.events.subjects import inbound_subject
from tests.support.pipeline import Pipeline
from tests.support.probes import probe
from tests.support.programme import households

ID = make_resident_id("350421", date(1980, 5, 17), 123)  # 35042119800517123X
MASKED = "3504**********123X"
FULL_WIDTH = ID.translate(str.maketrans("0123456789X", "０１２３４５６７８９Ｘ"))
DIGIT_RUN = re.compile(r"\d{15,}")  # 15 digits in a row (full-width too): an ID, or the front of one


def shows_an_id(text: str) -> bool:
    """Whether ``text`` holds five characters in a row of the ID (more than 3504 and 123X, what
    its masked form shows) or any run of 15 digits."""
    return bool(DIGIT_RUN.search(text)) or any(n[i:i + 5] in text for n in (ID, FULL_WIDTH) for i in range(len(ID) - 4))


class VerbosePipeline(Pipeline):
    """Every logger of the service at DEBUG, the libraries' included."""

    def env(self) -> dict[str, str]:
        return dict(super().env(), GUANHUAI_LOG_LEVEL="DEBUG", GUANHUAI_LOG_LIBRARY_LEVEL="DEBUG")


@pytest.fixture(scope="module")
async def enrollment_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    """All an enrollment process wrote (stdout and stderr), from its start to its stop, having
    been sent a valid household and 31 dead-lettered ones whose detail (`payload.<key>: Extra
    inputs are not permitted`) names a key ending in the ID, at offsets around the 300th character,
    where the call sites used to cut it."""
    workdir = tmp_path_factory.mktemp("log-masking")
    pipeline = VerbosePipeline(workdir, f"sqlite:///{workdir / 'log.db'}")
    pipeline.nats.start()
    try:
        pipeline.start_component("enrollment")
        await pipeline.connect()
        await pipeline.wait_ready_for(("enrollment-county-v1",))
        subject = inbound_subject("county", "HouseholdRegistered")
        headers = {"X-Resident-Id": ID, "X-Member": str(int(ID[:17]))}
        good, *bad = households(32, seed=17)
        await pipeline.js.publish(subject, good.model_dump_json().encode(), headers=dict(headers, **{"Nats-Msg-Id": str(good.event_id)}))
        for n, message in enumerate(bad):
            body = json.loads(message.model_dump_json())
            body["payload"]["k" * (240 + n) + ID] = [int(ID[:17]), FULL_WIDTH]
            await pipeline.js.publish(subject, json.dumps(body).encode(), headers=dict(headers, **{"Nats-Msg-Id": f"{ID}-{n}"}))
        deadline = time.monotonic() + 60
        while pipeline.all_output().count('"dead_lettered"') < len(bad):
            pipeline.check_alive()
            assert time.monotonic() < deadline, pipeline.tail_logs()
            await asyncio.sleep(0.2)
    finally:
        await pipeline.stop()  # (SIGTERM: the stop's lines are in the output too)
    return pipeline.all_output()


def test_a_service_fed_ids_in_headers_and_dead_lettered_bodies_writes_no_id_whole_nor_its_front(enrollment_output: str) -> None:
    lines = [line for line in enrollment_output.splitlines() if line.strip()]
    leaked = [line for line in lines if shows_an_id(line)]
    probe("log_id_leak", lines=len(lines), ids_leaked=len(leaked))
    assert MASKED in enrollment_output  # the IDs were there to leak
    assert leaked == []


def test_faststreams_own_lines_are_json_lines_of_the_service_like_its_others(enrollment_output: str) -> None:
    lines = [json.loads(line) for line in enrollment_output.splitlines() if line.strip()]  # no plain-text line
    faststream = [line for line in lines if line["logger"].startswith("faststream")]
    assert faststream and all(line["service"] == "enrollment" for line in faststream)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_apis_access_line_for_a_url_carrying_an_id_is_masked(tmp_path: Path) -> None:
    port = _free_port()
    env = dict(os.environ, GUANHUAI_DB_URL=f"sqlite:///{tmp_path / 'log.db'}", GUANHUAI_API_PORT=str(port),
               GUANHUAI_LOG_JSON="true", GUANHUAI_LOG_LEVEL="INFO")
    env.pop("GUANHUAI_API_TOKEN", None)
    out = tmp_path / "api.log"
    with out.open("wb") as sink:
        api = subprocess.Popen([sys.executable, "-m", "guanhuai", "serve", "api"], env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/api/members/{ID}?again={ID}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                assert api.poll() is None and time.monotonic() < deadline, out.read_text()
                time.sleep(0.1)
        time.sleep(0.3)
    finally:
        api.terminate()
        api.wait(20)
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert access and all(f"/api/members/{MASKED}?again={MASKED}" in line["event"] for line in access)
    assert not shows_an_id(out.read_text())
