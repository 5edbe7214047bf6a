"""`guanhuai up` runs everything until told to stop, and stops everything it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from guanhuai.embedded import free_port


def test_up_serves_the_dashboard_and_stops_every_process_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, GUANHUAI_DATA_DIR=str(tmp_path), GUANHUAI_DB_URL=f"sqlite:///{tmp_path / 'guanhuai.db'}")
    up = subprocess.Popen([sys.executable, "-m", "guanhuai", "up", "--port", str(port)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/dashboard", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and up.poll() is None, "guanhuai up did not serve the dashboard"
            time.sleep(0.5)
        status = subprocess.run([sys.executable, "-m", "guanhuai", "status", "--json"], env=env, capture_output=True,
                                text=True, timeout=60)
        assert '"healthy": true' in status.stdout, status.stdout + status.stderr
        children = [int(p) for p in re.findall(r'"\w+": (\d+)', (tmp_path / "stack.json").read_text())]
        assert len(children) == 6
    finally:
        up.send_signal(signal.SIGTERM)
        output, _ = up.communicate(timeout=90)
    assert "dashboard http://127.0.0.1:" in output
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert not (tmp_path / "stack.json").exists()
