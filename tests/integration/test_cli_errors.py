"""Ordinary mistakes on the command line end in one line (Chinese / English) and exit 2 (usage)
or 1 (failure): no traceback, no hang, and no file made by a command that only reads."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guanhuai.embedded import free_port
from shared.events.store import EventStore

GUANHUAI = [sys.executable, "-m", "guanhuai"]


def run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GUANHUAI_")}
    return subprocess.run([*GUANHUAI, *args], cwd=cwd, env={**clean, **env}, capture_output=True, text=True,
                          timeout=60)


def one_line_failure(cwd: Path, code: int, *args: str, **env: str) -> str:
    """Run, and check the exit code, exactly one line on stderr, no traceback, no new file."""
    before = sorted(p.relative_to(cwd) for p in cwd.rglob("*"))
    result = run(cwd, *args, **env)
    lines = result.stderr.splitlines()
    assert result.returncode == code, result.stdout + result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert sorted(p.relative_to(cwd) for p in cwd.rglob("*")) == before, "a command that only reads made a file"
    return lines[0]


def event_log(path: Path) -> str:
    url = f"sqlite:///{path}"

    async def create() -> None:
        await (await EventStore.open(url)).close()

    asyncio.run(create())
    return url


def test_a_roster_that_is_not_there_is_a_usage_error(tmp_path: Path) -> None:
    line = one_line_failure(tmp_path, 2, "publish", "missing.xlsx", "--source", "mingxi")
    assert "missing.xlsx" in line


def test_a_txt_roster_is_refused_naming_the_kinds_of_file_taken(tmp_path: Path) -> None:
    (tmp_path / "roster.txt").write_text("户主,身份证号\n", encoding="utf-8")
    line = one_line_failure(tmp_path, 2, "publish", "roster.txt", "--source", "mingxi")
    assert ".xlsx" in line and "花名册" in line


@pytest.mark.parametrize("args", [
    ("report", "--year", "2020", "--as-of", "2020-13-01"),
    ("replay", "--until", "yesterday"),
    ("replay", "--until", "2020-01-01", "--by", "whenever"),
    ("targets", "show", "--year", "2020", "--format", "yaml"),
    ("report", "--year", "2020", "--format", "yaml"),
    ("publish", "x.jsonl", "--source", "s", "--kind", "bank"),
    ("serve", "everything"),
])
def test_a_bad_value_is_one_usage_line_before_anything_runs(tmp_path: Path, args: tuple[str, ...]) -> None:
    (tmp_path / "x.jsonl").write_text("", encoding="utf-8")
    one_line_failure(tmp_path, 2, *args)


@pytest.mark.parametrize("args", [
    ("report", "--year", "2020"),
    ("replay", "--until", "2020-01-01"),
    ("audit", "verify"),
    ("targets", "show", "--year", "2020"),
    ("rebuild",),
    ("status", "--nats-url", "nats://127.0.0.1:1"),
    ("dlq", "list"),
    ("dlq", "show", "1"),
])
def test_a_command_that_reads_a_database_that_is_not_there_says_so_and_creates_none(
        tmp_path: Path, args: tuple[str, ...]) -> None:
    line = one_line_failure(tmp_path, 1, *args, GUANHUAI_DATA_DIR=str(tmp_path / "data"))
    assert "数据库不存在" in line and "no event log at" in line and "guanhuai.db" in line
    assert not (tmp_path / "data").exists()


def test_a_database_without_the_event_log_is_no_event_log(tmp_path: Path) -> None:
    import sqlite3

    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    line = one_line_failure(tmp_path, 1, "report", "--year", "2020", "--db-url", f"sqlite:///{tmp_path / 'other.db'}")
    assert "no event log at" in line


def test_status_with_nats_unreachable_ends_within_ten_seconds_naming_the_server(tmp_path: Path) -> None:
    url = event_log(tmp_path / "log.db")
    port = free_port()  # nobody listens there
    started = time.monotonic()
    line = one_line_failure(tmp_path, 1, "status", "--nats-url", f"nats://127.0.0.1:{port}", GUANHUAI_DB_URL=url)
    assert time.monotonic() - started < 10
    assert f"127.0.0.1:{port}" in line and "无法连接 NATS" in line and "cannot reach NATS" in line


def test_status_against_a_silent_address_gives_up_after_the_connect_timeout(tmp_path: Path) -> None:
    url = event_log(tmp_path / "log.db")
    started = time.monotonic()
    # 10.255.255.1 is not routed here: the connection neither succeeds nor is refused.
    line = one_line_failure(tmp_path, 1, "status", "--nats-url", "nats://10.255.255.1:4222", "--connect-timeout", "1",
                            GUANHUAI_DB_URL=url)
    assert time.monotonic() - started < 6
    assert "10.255.255.1:4222" in line


def test_publish_with_nats_unreachable_is_one_line_naming_the_server_without_its_password(tmp_path: Path) -> None:
    url = event_log(tmp_path / "log.db")
    from tests.support.events import household

    (tmp_path / "e.jsonl").write_text(household("H1").model_dump_json() + "\n", encoding="utf-8")
    port = free_port()
    line = one_line_failure(tmp_path, 1, "publish", "e.jsonl", "--source", "s", "--nats-url",
                            f"nats://county:secret@127.0.0.1:{port}", GUANHUAI_DB_URL=url)
    assert f"127.0.0.1:{port}" in line and "secret" not in line


def test_without_a_running_stack_or_a_nats_url_status_says_so_instead_of_trying_4222(tmp_path: Path) -> None:
    url = event_log(tmp_path / "log.db")
    line = one_line_failure(tmp_path, 1, "status", GUANHUAI_DB_URL=url, GUANHUAI_DATA_DIR=str(tmp_path))
    assert "no running stack" in line and "GUANHUAI_NATS_URL" in line


def test_guanhuai_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run(tmp_path, "report", "--year", "2020", "--db-url", f"sqlite:///{tmp_path / 'none.db'}",
                 GUANHUAI_DEBUG="1")
    assert result.returncode != 0 and "Traceback" in result.stderr
    assert not (tmp_path / "none.db").exists()


def test_version_is_printed(tmp_path: Path) -> None:
    from importlib.metadata import version

    result = run(tmp_path, "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"guanhuai {version('guanhuai')}"


def test_help_lists_the_choices(tmp_path: Path) -> None:
    result = run(tmp_path, "replay", "--help", COLUMNS="200")
    assert "recorded" in result.stdout and "occurred" in result.stdout


def test_a_second_up_on_the_same_data_directory_is_refused_naming_the_pid_holding_it(tmp_path: Path) -> None:
    from guanhuai.stack import STATE_FILE, hold_lock

    lock = hold_lock(tmp_path)  # as the running `guanhuai up` holds it
    try:
        (tmp_path / STATE_FILE).write_text('{"nats_url": "nats://127.0.0.1:1"}', encoding="utf-8")
        line = one_line_failure(tmp_path, 1, "up", "--port", str(free_port()), GUANHUAI_DATA_DIR=str(tmp_path))
        assert f"pid {os.getpid()}" in line and "already running" in line
        assert (tmp_path / STATE_FILE).exists()
    finally:
        lock.close()
    # let go with the process that held it: the next one may take it
    hold_lock(tmp_path).close()


def test_config_shows_the_running_stacks_nats_and_api_port(tmp_path: Path) -> None:
    import json

    from guanhuai.stack import STATE_FILE

    (tmp_path / STATE_FILE).write_text(json.dumps({"nats_url": "nats://127.0.0.1:41234", "api_port": 41235}),
                                       encoding="utf-8")
    result = run(tmp_path, "config", GUANHUAI_DATA_DIR=str(tmp_path))
    in_force = json.loads(result.stdout)["running_stack"]
    assert in_force["nats_url (in force)"] == "nats://127.0.0.1:41234" and in_force["api_port (in force)"] == 41235


def test_dlq_retry_with_nats_unreachable_is_one_line_and_records_no_retry(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from sqlalchemy import func, insert, select

    from guanhuai.ops import dead_letter_retries, retries_metadata
    from shared.events.inbox import dead_letters
    from shared.events.inbox import metadata as inbox_metadata

    url = event_log(tmp_path / "log.db")

    async def one_letter() -> None:
        store = await EventStore.open(url)
        await store.create_schema(inbox_metadata, retries_metadata)
        with store.transaction() as tx:
            tx.connection.execute(insert(dead_letters), {
                "consumer": "enrollment-county-v1", "nats_stream": "GUANHUAI_IN_COUNTY", "nats_sequence": 1,
                "subject": "guanhuai.in.county.HouseholdRegistered", "headers": "{}", "body": b"{}",
                "reason": "invalid_envelope", "detail": "", "received_at": datetime.now(timezone.utc)})
        await store.close()

    async def retries() -> int:
        store = await EventStore.open(url, create=False)
        with store.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(dead_letter_retries)).scalar_one()
        await store.close()
        return count

    asyncio.run(one_letter())
    port = free_port()
    started = time.monotonic()
    line = one_line_failure(tmp_path, 1, "dlq", "retry", "1", "--nats-url", f"nats://127.0.0.1:{port}",
                            GUANHUAI_DB_URL=url)
    assert time.monotonic() - started < 10 and f"127.0.0.1:{port}" in line
    assert asyncio.run(retries()) == 0


def test_dlq_list_written_to_a_pipe_keeps_consumer_names_and_subjects_whole(tmp_path: Path) -> None:
    from shared.events.inbox import DeadLetter, record_dead_letters
    from shared.events.inbox import metadata as inbox_tables

    url = event_log(tmp_path / "log.db")
    subject = "guanhuai.in.county.HouseholdRegistered"

    async def letter() -> None:
        store = await EventStore.open(url)
        await store.create_schema(inbox_tables)
        with store.transaction() as tx:
            record_dead_letters(tx.connection, [DeadLetter(
                consumer="enrollment-county-v1", nats_stream="GUANHUAI_IN_COUNTY", nats_sequence=7, subject=subject,
                headers={}, body=b"{}", reason="invalid_payload", detail="HouseholdRegistered: members: too few")])
        await store.close()

    asyncio.run(letter())
    result = run(tmp_path, "dlq", "list", GUANHUAI_DB_URL=url)
    assert result.returncode == 0, result.stderr
    assert "enrollment-county-v1" in result.stdout and subject in result.stdout


def test_the_commands_that_print_tables_take_json_for_tools(tmp_path: Path) -> None:
    url = event_log(tmp_path / "log.db")
    for command in (["report", "--year", "2024", "--from-log"], ["targets", "show", "--year", "2024"],
                    ["dlq", "list"]):
        result = run(tmp_path, *command, "--json", GUANHUAI_DB_URL=url)
        assert result.returncode == 0, (command, result.stderr)
        json.loads(result.stdout)  # one JSON document, nothing else
