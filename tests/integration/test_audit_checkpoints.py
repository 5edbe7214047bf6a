"""Signed checkpoints anchor the audit outside the log: someone with database rights who cuts the
tail, rewrites and rehashes history, or changes a column's stored type is caught, by position,
with exit 1 and one line, never a traceback. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select, text

from shared.events.audit import (
    Checkpoint,
    CheckpointError,
    Claim,
    LogHead,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    log_head,
    make_checkpoint,
    verify_chain,
    write_checkpoint,
    write_checkpoints_every,
)
from shared.events.hashing import GENESIS, chain_hash
from shared.events.store import EventStore
from shared.events.tables import events, utc_text
from tests.support.events import target
from tests.support.probes import probe


def guanhuai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guanhuai", *args], capture_output=True, text=True, timeout=120)


def failed_at(result: subprocess.CompletedProcess[str]) -> int | None:
    """The first bad position the command names, after checking it failed as people should see it."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1 and "审计失败" in result.stderr and "audit FAILED" in result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])["first_bad_position"]


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    """A signing key and its public key, as `audit keygen` writes them."""
    private = tmp_path / "keys" / "audit.pem"
    private.parent.mkdir()
    public, _ = generate_key(private)
    return private, public


async def fill(store: EventStore, count: int) -> None:
    await store.append("targets", [target(f"town{n:03d}") for n in range(await store.head_position(), count)])


async def checkpoint_file(store: EventStore, key: Path, folder: Path, anchor_every: int = 10) -> Path:
    folder.mkdir(exist_ok=True)
    path = write_checkpoint(folder, await make_checkpoint(store, load_private_key(key), anchor_every=anchor_every))
    assert path is not None
    return path


async def tamper(store: EventStore, *statements: str) -> None:
    """Alter the log as someone with database rights would: drop the guard, then change rows."""
    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            conn.execute(text("DROP TRIGGER IF EXISTS events_no_update"))
            conn.execute(text("DROP TRIGGER IF EXISTS events_no_delete"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS events_append_only ON events"))
        for sql in statements:
            conn.execute(text(sql))


async def rewrite_and_rehash(store: EventStore, position: int, old: str, new: str) -> None:
    """Change one payload, then recompute every hash from there on, so that the chain holds."""
    await tamper(store, f"UPDATE events SET payload = replace(payload, '{old}', '{new}') WHERE position = {position}")
    with store.engine.begin() as conn:
        rows = conn.execute(select(events).where(events.c.position >= position - 1).order_by(events.c.position)).all()
        prev = rows[0].hash if rows[0].position < position else GENESIS
        for r in rows:
            if r.position < position:
                continue
            digest = chain_hash(prev, r.position, r.event_id, r.stream_id, r.stream_version, r.event_type,
                                r.schema_version, utc_text(r.occurred_at), utc_text(r.recorded_at), r.source,
                                r.correlation_id, r.causation_id, r.payload)
            conn.execute(events.update().where(events.c.position == r.position).values(prev_hash=prev, hash=digest))
            prev = digest


async def test_a_good_log_extends_its_checkpoints_and_the_head_a_report_named(store: EventStore, db_url: str, keys, tmp_path: Path) -> None:
    private, public = keys
    await fill(store, 25)
    folder = tmp_path / "checkpoints"
    await checkpoint_file(store, private, folder)
    reported = await log_head(store)
    await fill(store, 40)
    await checkpoint_file(store, private, folder)
    result = guanhuai("audit", "verify", "--db-url", db_url, "--checkpoint", str(folder), "--head", str(reported),
                      "--public-key", str(public))
    assert result.returncode == 0, result.stderr
    assert "audit ok: 40 events" in result.stdout and "extends 2 checkpoint(s) and 1 head(s)" in result.stdout
    assert str(await log_head(store)) in result.stdout  # the head an auditor can hold on to next time


async def test_a_log_cut_below_a_checkpoint_fails_saying_where_it_now_ends(store: EventStore, db_url: str, keys, tmp_path: Path) -> None:
    private, public = keys
    await fill(store, 20)
    signed = await checkpoint_file(store, private, tmp_path / "checkpoints")
    await tamper(store, "DELETE FROM events WHERE position > 15")
    assert (await verify_chain(store)).ok  # what the chain alone says: the cut does not show

    result = guanhuai("audit", "verify", "--db-url", db_url, "--checkpoint", str(signed), "--public-key", str(public))
    caught = failed_at(result) == 16 and "log ends at position 15" in result.stderr and "holds position 20" in result.stderr
    probe(f"audit_truncation[{store.dialect}]", tampered=1, caught=int(caught), missed=int(not caught))
    assert caught, result.stderr


async def test_a_rewritten_and_rehashed_history_fails_at_the_first_anchor_that_differs(store: EventStore, db_url: str, keys, tmp_path: Path) -> None:
    private, public = keys
    await fill(store, 50)
    signed = await checkpoint_file(store, private, tmp_path / "checkpoints", anchor_every=10)
    before = {p: await log_head(store, p) for p in (22, 23)}
    await rewrite_and_rehash(store, 23, "town022", "town999")
    assert (await verify_chain(store)).ok  # the chain holds: only an anchor outside the log shows it

    result = guanhuai("audit", "verify", "--db-url", db_url, "--checkpoint", str(signed), "--public-key", str(public))
    assert failed_at(result) == 30 and "rewritten at a position from 21 to 30" in result.stderr
    # Heads that reports named narrow it to the very row.
    exact = guanhuai("audit", "verify", "--db-url", db_url, "--checkpoint", str(signed), "--public-key", str(public),
                     "--head", str(before[22]), "--head", str(before[23]))
    caught = failed_at(exact) == 23 and "position 23 was rewritten" in exact.stderr
    probe(f"audit_rewrite_rehash[{store.dialect}]", tampered=1, caught=int(caught), missed=int(not caught))
    assert caught, exact.stderr


async def test_anchors_every_position_name_the_rewritten_row_itself(store: EventStore, keys) -> None:
    private, _ = keys
    await fill(store, 12)
    point = await make_checkpoint(store, load_private_key(private), anchor_every=1)
    await rewrite_and_rehash(store, 7, "town006", "town998")
    result = await verify_chain(store, claims=point.claims("checkpoint"))
    assert (result.first_bad_position, result.checked) == (7, 6)


async def test_a_payload_stored_as_a_blob_fails_naming_its_position_and_column(store: EventStore, db_url: str) -> None:
    await fill(store, 6)
    if store.dialect == "sqlite":
        await tamper(store, "UPDATE events SET payload = CAST(payload AS BLOB) WHERE position = 4")
        expected = 4
    else:  # PostgreSQL keeps one type per column: the whole column turned into bytes
        await tamper(store, "ALTER TABLE events ALTER COLUMN payload TYPE bytea USING convert_to(payload, 'UTF8')")
        expected = 1
    result = guanhuai("audit", "verify", "--db-url", db_url)
    caught = failed_at(result) == expected and "column payload holds bytes" in result.stderr
    probe(f"audit_blob_payload[{store.dialect}]", tampered=1, caught=int(caught), missed=int(not caught))
    assert caught, result.stderr


@pytest.mark.parametrize("column, value, kind", [("stream_version", "'two'", "str"), ("schema_version", "1.5", "float"),
                                                 ("hash", "CAST(hash AS BLOB)", "bytes")])
async def test_a_column_of_another_storage_type_is_named_not_a_traceback(tmp_path: Path, column: str, value: str, kind: str) -> None:
    store = await EventStore.open(f"sqlite:///{tmp_path / 'log.db'}")  # SQLite lets a column hold any type
    await fill(store, 5)
    await tamper(store, f"UPDATE events SET {column} = {value} WHERE position = 3")
    result = await verify_chain(store)
    await store.close()
    assert result.first_bad_position == 3 and f"column {column} holds {kind}" in (result.problem or "")


async def test_text_that_is_not_utf8_is_named_by_its_position(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'log.db'}"
    store = await EventStore.open(db_url)
    await fill(store, 5)
    await tamper(store, "UPDATE events SET payload = CAST(X'7B22FF' AS TEXT) WHERE position = 4")
    await store.close()
    result = guanhuai("audit", "verify", "--db-url", db_url)
    assert failed_at(result) == 4 and "cannot be read" in result.stderr


def forge(path: Path, **changes: object) -> None:
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


async def test_a_forged_checkpoint_is_refused(store: EventStore, db_url: str, keys, tmp_path: Path) -> None:
    private, public = keys
    await fill(store, 20)
    good = await checkpoint_file(store, private, tmp_path / "good")
    other_private = tmp_path / "other.pem"
    generate_key(other_private)
    by_other_key = await checkpoint_file(store, other_private, tmp_path / "other")
    claims_own_key = tmp_path / "claims-own-key.json"  # another key's signature under our key id
    claims_own_key.write_text(by_other_key.read_text())
    forge(claims_own_key, key_id=json.loads(good.read_text())["key_id"])
    cut_to_fit = tmp_path / "cut.json"  # an insider who cut the log to 15 moves the checkpoint down
    cut_to_fit.write_text(good.read_text())
    forge(cut_to_fit, position=15, hash=(await log_head(store, 15)).hash, anchors=["0" * 16])

    refused = 0
    for forged, says in ((by_other_key, "not by the public key given"), (claims_own_key, "signature does not verify"),
                         (cut_to_fit, "signature does not verify")):
        result = guanhuai("audit", "verify", "--db-url", db_url, "--checkpoint", str(forged), "--public-key", str(public))
        failed_at(result)
        refused += says in result.stderr
    probe(f"audit_forged_checkpoint[{store.dialect}]", forged=3, refused=refused, accepted=3 - refused)
    assert refused == 3


def test_a_checkpoint_edited_in_any_field_no_longer_verifies(keys) -> None:
    key = load_private_key(keys[0])
    point = Checkpoint(20, "a" * 64, None, "2024-01-01T00:00:00.000000+00:00", key_id(key.public_key()), 10,
                       ("b" * 16, "c" * 16))
    signed = replace(point, signature=base64.b64encode(key.sign(point.body())).decode())
    signed.verify(key.public_key(), "cp")
    for edit in ({"position": 21}, {"hash": "d" * 64}, {"anchors": ("b" * 16, "e" * 16)}, {"signed_at": "2030"},
                 {"recorded_at": "2024"}, {"anchor_every": 11}):
        with pytest.raises(CheckpointError, match="signature does not verify"):
            replace(signed, **edit).verify(key.public_key(), "cp")


async def appears(path: Path, within_s: float = 10.0) -> None:
    for _ in range(int(within_s / 0.02)):
        if path.exists():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path.name} was not written")


async def test_the_relay_side_writer_signs_each_growth_of_the_log_and_never_overwrites(store: EventStore, keys, tmp_path: Path) -> None:
    private, public = keys
    folder = tmp_path / "checkpoints"
    await fill(store, 5)
    stop = asyncio.Event()
    writer = asyncio.create_task(write_checkpoints_every(store, private, folder, 0.05, stop))
    await appears(folder / "checkpoint-000000000005.json")
    await fill(store, 9)
    await appears(folder / "checkpoint-000000000009.json")
    await asyncio.sleep(0.2)  # a few more rounds with nothing new
    stop.set()
    await asyncio.wait_for(writer, 10)

    files = sorted(folder.glob("checkpoint-*.json"))
    assert [f.name for f in files] == ["checkpoint-000000000005.json", "checkpoint-000000000009.json"]
    for f in files:
        point = Checkpoint.parse(f.read_text(), f.name)
        point.verify(load_public_key(public), f.name)
    # A restarted writer proves the log from its newest checkpoint; a rewrite since is not signed.
    await fill(store, 12)
    await rewrite_and_rehash(store, 8, "town007", "town997")
    stop = asyncio.Event()
    writer = asyncio.create_task(write_checkpoints_every(store, private, folder, 0.05, stop))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(writer, 10)
    assert len(list(folder.glob("checkpoint-*.json"))) == 2


def test_keygen_writes_a_key_only_its_owner_reads_and_never_overwrites_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.pem"
    made = guanhuai("audit", "keygen", "--out", str(path))
    assert made.returncode == 0, made.stderr
    assert os.stat(path).st_mode & 0o777 == 0o600 and f"{path}.pub" in made.stdout and "key id" in made.stdout
    before = path.read_bytes()
    again = guanhuai("audit", "keygen", "--out", str(path))
    assert again.returncode == 1 and "Traceback" not in again.stderr and "never overwritten" in again.stderr
    assert path.read_bytes() == before


async def test_checkpoint_command_prints_a_signed_head_or_writes_it_once(store: EventStore, db_url: str, keys, tmp_path: Path) -> None:
    private, public = keys
    await fill(store, 3)
    printed = guanhuai("audit", "checkpoint", "--key", str(private), "--db-url", db_url)
    assert printed.returncode == 0, printed.stderr
    point = Checkpoint.parse(printed.stdout, "stdout")
    point.verify(load_public_key(public), "stdout")
    assert point.head == await log_head(store) and point.recorded_at is not None
    out = tmp_path / "cp.json"
    assert guanhuai("audit", "checkpoint", "--key", str(private), "--db-url", db_url, "--out", str(out)).returncode == 0
    twice = guanhuai("audit", "checkpoint", "--key", str(private), "--db-url", db_url, "--out", str(out))
    assert twice.returncode == 1 and "never overwritten" in twice.stderr


async def test_checkpoint_command_refuses_to_sign_a_broken_chain(store: EventStore, db_url: str, keys) -> None:
    private, _ = keys
    await fill(store, 4)
    await tamper(store, "UPDATE events SET source = 'forged' WHERE position = 2")
    result = guanhuai("audit", "checkpoint", "--key", str(private), "--db-url", db_url)
    assert failed_at(result) is None and "not signing" in result.stderr and "position 2" in result.stderr


async def test_a_head_beyond_the_end_or_not_the_genesis_at_zero_fails(store: EventStore) -> None:
    await fill(store, 3)
    head = await log_head(store)
    cut = await verify_chain(store, claims=[Claim(9, head.hash, "head")])
    assert cut.first_bad_position == 4 and "ends at position 3" in (cut.problem or "")
    zero = await verify_chain(store, claims=[Claim(0, head.hash, "head")])
    assert zero.first_bad_position == 0
    assert (await verify_chain(store, claims=[Claim(0, GENESIS, "head"), Claim(3, head.hash, "head")])).ok
    assert str(LogHead.parse(str(head))) == str(head)
