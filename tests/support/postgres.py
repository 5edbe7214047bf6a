"""A PostgreSQL cluster of a test's own (initdb in a temporary folder, a free port on loopback),
started from this machine's PostgreSQL server binaries, so that a test can stop it, start it again
or switch TLS on without touching anyone else's server."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from guanhuai.embedded import free_port


def server_bin() -> Path | None:
    """The newest PostgreSQL server binaries: Debian's /usr/lib/postgresql/N/bin, else the PATH."""
    found = [b for b in Path("/usr/lib/postgresql").glob("*/bin")
             if (b / "initdb").exists() and (b / "pg_ctl").exists()]
    if found:
        return max(found, key=lambda b: int(b.parent.name) if b.parent.name.isdigit() else 0)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and (Path(initdb).parent / "pg_ctl").exists() else None


def unavailable() -> str | None:
    """Why no private cluster can run here (for a skip that says so), or None."""
    if server_bin() is None:
        return ("no private PostgreSQL cluster: the server binaries (initdb, pg_ctl) are not installed "
                "(looked under /usr/lib/postgresql/*/bin and on PATH)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "no private PostgreSQL cluster: running as root and there is no postgres OS user to run it as"
    return None


class PostgresCluster:
    """``with PostgresCluster(...) as pg:`` creates and starts the cluster and removes it after.

    ``settings`` go into postgresql.conf over the defaults below; ``files`` (certificates, keys)
    are copied into the data directory, where postgresql.conf finds them by bare file name.
    ``hba`` lines replace pg_hba.conf (None keeps initdb's: trust for everyone)."""

    def __init__(self, *, settings: Mapping[str, object] = {}, files: Sequence[Path] = (),
                 hba: Sequence[str] | None = None) -> None:
        bin_dir = server_bin()
        if bin_dir is None:
            raise RuntimeError(unavailable())
        self.bin = bin_dir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="guanhuai-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.settings = {"listen_addresses": "127.0.0.1", "port": self.port, "unix_socket_directories": self.dir,
                         "fsync": "off", "max_connections": 200, **settings}
        self.files, self.hba = files, hba
        self.as_root = os.geteuid() == 0  # PostgreSQL refuses to run as root: run it as postgres
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")

    def url(self, database: str = "postgres", *, user: str = "postgres", host: str = "127.0.0.1",
            query: str = "") -> str:
        return f"postgresql://{user}@{host}:{self.port}/{database}" + (f"?{query}" if query else "")

    def _run(self, program: str, *args: str | Path, timeout: float = 120) -> None:
        command = [str(self.bin / program), *map(str, args)]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr[-2000:]}\n{log}")

    def create(self) -> PostgresCluster:
        # --locale=C: the same collation whatever this machine's locale is
        self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        for source in self.files:
            target = shutil.copy(source, self.data / source.name)
            os.chmod(target, 0o600)  # PostgreSQL will not use a key that others can read
            if self.as_root:
                shutil.chown(target, "postgres", "postgres")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = '{value}'\n" for name, value in self.settings.items())
        if self.hba is not None:  # the socket stays open: sql() sets the cluster up through it
            (self.data / "pg_hba.conf").write_text("".join(f"{line}\n" for line in ["local all all trust", *self.hba]))
        self.start()
        return self

    def start(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def sql(self, statement: str) -> None:
        self._run("psql", "-h", self.dir, "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                  "-v", "ON_ERROR_STOP=1", "-c", statement, timeout=60)

    def destroy(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        try:
            return self.create()
        except BaseException:
            self.destroy()
            raise

    def __exit__(self, *exc: object) -> None:
        self.destroy()
