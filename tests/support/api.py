"""The reporting API as a real ``guanhuai serve api`` process over a rebuilt Mingxi 2020 half-year."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from guanhuai.embedded import free_port
from guanhuai.scenarios import mingxi_2020
from services.reporting.storage import rebuild
from shared.events.store import EventStore


@contextmanager
def served_api(workdir: Path, ready_path: str, **env: str) -> Iterator[str]:
    """The API's base URL once ``ready_path`` answers 200; ``env``: more settings (a token)."""
    db_url = f"sqlite:///{workdir / 'log.db'}"

    async def prepare() -> None:
        store = await EventStore.open(db_url)
        await mingxi_2020(store, share=0.5)
        await rebuild(store)
        await store.close()

    asyncio.run(prepare())
    port = free_port()
    log = (workdir / "api.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "guanhuai", "serve", "api", "--db-url", db_url, "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, GUANHUAI_LOG_JSON="true", **env))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}{ready_path}", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError((workdir / "api.log").read_text())
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(20)
        log.close()
