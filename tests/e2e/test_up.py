"""`guanhuai up` runs everything until told to stop, and stops everything it started."""

from __future__ import annotations

import json
import os
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
        children = list(json.loads((tmp_path / "stack.json").read_text())["pids"].values())
        assert len(children) == 6
        second = subprocess.run([sys.executable, "-m", "guanhuai", "up", "--port", str(free_port())], env=env,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and f"pid {up.pid}" in second.stderr, second.stdout + second.stderr
        assert len(second.stderr.splitlines()) == 1 and "Traceback" not in second.stderr
        assert (tmp_path / "stack.json").exists(), "the refused second up removed the first one's stack.json"
        config = subprocess.run([sys.executable, "-m", "guanhuai", "config"], env=env, capture_output=True, text=True,
                                timeout=60)
        in_force = json.loads(config.stdout)["running_stack"]
        assert in_force["api_port (in force)"] == port
        assert in_force["nats_url (in force)"] == json.loads((tmp_path / "stack.json").read_text())["nats_url"]
    finally:
        up.send_signal(signal.SIGTERM)
        output, _ = up.communicate(timeout=90)
    assert "dashboard http://127.0.0.1:" in output
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert not (tmp_path / "stack.json").exists()
