"""Auditors' tools: verify the hash chain, and anchor the log outside itself with signed checkpoints.

A hash chain alone proves nothing against someone with database rights: they can cut the tail,
or rewrite a row and recompute every later hash. A *checkpoint* is the head of the log (position
and hash) signed with an Ed25519 key that lives outside the database; kept off the database host,
it lets an auditor prove later that the log still extends that head. It also carries *anchors*
(the first 16 hex digits of the hash at every 1,000th position), so that a rewritten history is
narrowed to the 1,000 positions after the last anchor that still matches; several checkpoints, or
a ``POSITION:HASH`` head from a report, narrow it further.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from .hashing import GENESIS, chain_hash
from .logs import get_logger, mask_text
from .store import EventStore
from .tables import events, utc_text

FORMAT = "guanhuai-checkpoint/1"
ANCHOR_EVERY = 1000
ANCHOR_DIGITS = 16  # enough to tell a rewritten anchor; the head's full hash is what is proven


@dataclass(frozen=True)
class LogHead:
    """A point of the log an auditor can hold on to: the last position and its chain hash.
    Written ``POSITION:HASH`` (``0:`` followed by the genesis hash for an empty log)."""

    position: int
    hash: str

    def __str__(self) -> str:
        return f"{self.position}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> LogHead:
        position, sep, digest = text.strip().partition(":")
        if not sep or not position.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"a log head is POSITION:HASH (64 hex digits), not {text!r}")
        return cls(int(position), digest)


async def log_head(store: EventStore, until_position: int | None = None) -> LogHead:
    """The head of the log (or of its prefix up to ``until_position``): what a report computed
    from that prefix names, so that an auditor can prove later that the log still extends it."""
    query = select(events.c.position, events.c.hash).order_by(events.c.position.desc()).limit(1)
    if until_position is not None:
        query = query.where(events.c.position <= until_position)
    row = await store.read(lambda conn: conn.execute(query).first())
    return LogHead(row[0], row[1]) if row else LogHead(0, GENESIS)


@dataclass(frozen=True)
class Claim:
    """What an anchor held outside the log says: the chain hash at ``position`` is (or, for an
    anchor, starts with) ``hash``. ``source`` names where it comes from, for the report."""

    position: int
    hash: str
    source: str


@dataclass(frozen=True)
class VerifyResult:
    checked: int
    head_hash: str
    first_bad_position: int | None = None
    problem: str | None = None
    problem_zh: str | None = None
    head_position: int = 0
    head_recorded_at: str | None = None
    anchors: dict[int, str] = field(default_factory=dict)  # position -> hash, when asked for

    @property
    def ok(self) -> bool:
        return self.first_bad_position is None

    @property
    def head(self) -> LogHead:
        return LogHead(self.head_position, self.head_hash)


class _Bad(Exception):
    def __init__(self, position: int, problem: str, problem_zh: str) -> None:
        super().__init__(problem)
        self.position, self.problem, self.problem_zh = position, problem, problem_zh


def _stamp(value: str | datetime) -> str:
    """Timestamps as hashed: SQLite rows hold the canonical text itself, PostgreSQL an instant."""
    return value if isinstance(value, str) else utc_text(value)


_INT, _TEXT = (int,), (str,)
_STORED_TYPES: dict[str, tuple[type, ...]] = {
    "event_id": _TEXT, "stream_id": _TEXT, "stream_version": _INT, "event_type": _TEXT,
    "schema_version": _INT, "occurred_at": (str, datetime), "recorded_at": (str, datetime), "source": _TEXT,
    "correlation_id": _TEXT, "causation_id": (str, type(None)), "payload": _TEXT, "prev_hash": _TEXT, "hash": _TEXT,
}


def _check_types(r: dict[str, Any]) -> None:
    """Every column holds what the hash was computed over: a BLOB (bytes) where text belongs, or a
    number where an integer is expected, is a change to the log, reported at its row and column."""
    for name, kinds in _STORED_TYPES.items():
        value = r[name]
        if not isinstance(value, kinds) or isinstance(value, bool):
            what = type(value).__name__
            raise _Bad(r["position"], f"column {name} holds {what}, not {kinds[0].__name__} (stored type changed)",
                       f"第 {r['position']} 行的 {name} 列存储类型为 {what}，不是 {kinds[0].__name__}（存储类型被改动）")


async def _pages(store: EventStore, after: int, until_position: int | None) -> Any:
    """The log's rows as the driver gives them, in pages. A row the driver cannot read at all
    (text that is not UTF-8 on SQLite, say) is found and named by its position."""
    columns = list(events.c)
    cursor = after
    try:
        async with aclosing(store.read_rows(after, batch_size=5000, until_position=until_position, columns=columns)) as pages:
            async for rows in pages:
                yield rows
                cursor = rows[-1][0]
    except SQLAlchemyError as exc:
        raise await _unreadable(store, cursor, exc) from exc


async def _unreadable(store: EventStore, cursor: int, exc: SQLAlchemyError) -> _Bad:
    """Read the rows after ``cursor`` one at a time to find the one that cannot be read."""
    query = select(events.c.position).where(events.c.position > cursor).order_by(events.c.position).limit(200)
    positions = await store.read(lambda conn: list(conn.execute(query).scalars()))
    # The driver may quote the row's text: masked first, so that cutting it cannot leave part of an ID.
    reason = mask_text(str(getattr(exc, "orig", exc)).splitlines()[0])[:200]
    for position in positions:
        try:
            async for _ in store.read_rows(position - 1, batch_size=1, until_position=position, columns=list(events.c)):
                pass
        except SQLAlchemyError:
            return _Bad(position, f"the row cannot be read ({reason})", f"第 {position} 行无法读取（{reason}）")
    at = positions[0] if positions else cursor + 1
    return _Bad(at, f"rows from here on cannot be read ({reason})", f"从第 {at} 行起无法读取（{reason}）")


async def verify_chain(
    store: EventStore,
    on_progress: Callable[[int], None] | None = None,
    *,
    claims: Iterable[Claim] = (),
    start: LogHead | None = None,
    until_position: int | None = None,
    anchor_every: int = 0,
) -> VerifyResult:
    """Walk the log in position order: positions must run 1, 2, 3, ...; each row's ``prev_hash``
    must be the previous row's ``hash``; each ``hash`` must match the row's fields; each column
    must hold the type it was hashed as.

    ``claims`` (from checkpoints and report heads) must each hold where the walk passes them, and
    none may lie beyond the log's end (a cut tail). ``start``: a head already proven (a previous
    checkpoint); the walk then begins at its row, which must still hash to it. ``anchor_every``:
    also collect the hash at every such position (for a new checkpoint)."""
    names = [c.name for c in events.c]
    claims = [*claims, *([Claim(start.position, start.hash, "the previous checkpoint")] if start else [])]
    pending = sorted(claims, key=lambda c: c.position)
    anchors: dict[int, str] = {}
    at_start = start is not None and start.position > 0
    prev: str | None = None if at_start else GENESIS  # None: the first row's own prev_hash is taken
    expected = start.position if at_start else 1
    checked, recorded_at, last_good = 0, None, 0
    try:
        while pending and pending[0].position == 0:  # the empty log's head
            claim = pending.pop(0)
            if claim.hash != GENESIS:
                raise _Bad(0, f"{claim.source} holds position 0 with a hash that is not the genesis hash",
                           f"{claim.source} 的第 0 位哈希不是创世哈希")
        async with aclosing(_pages(store, expected - 1, until_position)) as pages:
            async for rows in pages:
                for row in rows:
                    r = dict(zip(names, row))
                    digest = _check_row(r, expected, prev)
                    position = r["position"]
                    while pending and pending[0].position == position:
                        claim = pending.pop(0)
                        if not digest.startswith(claim.hash):
                            raise _rewritten(claim, last_good)
                        last_good = position
                    if anchor_every and position % anchor_every == 0:
                        anchors[position] = digest
                    prev, expected, checked, recorded_at = digest, expected + 1, checked + 1, _stamp(r["recorded_at"])
                if on_progress:
                    on_progress(checked)
        if pending:  # claims beyond the end: the log was cut below a head someone holds
            end, claim = expected - 1, pending[-1]
            raise _Bad(end + 1, f"the log ends at position {end}, but {claim.source} holds position {claim.position} "
                                f"(positions {end + 1} to {claim.position} were removed)",
                       f"日志止于第 {end} 位，而 {claim.source} 持有第 {claim.position} 位（第 {end + 1} 至 "
                       f"{claim.position} 位被删除）")
    except _Bad as bad:
        return VerifyResult(checked, prev or GENESIS, bad.position, bad.problem, bad.problem_zh,
                            head_position=expected - 1, head_recorded_at=recorded_at)
    return VerifyResult(checked, prev or GENESIS, head_position=expected - 1, head_recorded_at=recorded_at,
                        anchors=anchors)


def _check_row(r: dict[str, Any], expected: int, prev: str | None) -> str:
    """The row's chain hash, once its position, column types, link and hash are proven."""
    position = r["position"]
    if position != expected:
        raise _Bad(expected, f"position {expected} is missing (next is {position})",
                   f"第 {expected} 位缺失（下一行是第 {position} 位）")
    _check_types(r)
    if prev is not None and r["prev_hash"] != prev:
        raise _Bad(position, "prev_hash does not match the previous row's hash", "prev_hash 与上一行的哈希不符")
    digest = chain_hash(
        r["prev_hash"], position, r["event_id"], r["stream_id"], r["stream_version"], r["event_type"],
        r["schema_version"], _stamp(r["occurred_at"]), _stamp(r["recorded_at"]), r["source"],
        r["correlation_id"], r["causation_id"], r["payload"],
    )
    if digest != r["hash"]:
        raise _Bad(position, "row contents do not match its hash (altered)", "该行内容与其哈希不符（被改动）")
    return digest


def _rewritten(claim: Claim, last_good: int) -> _Bad:
    """The chain holds but differs from an anchor: history was rewritten and rehashed somewhere
    after the last anchor that still matched, at or before this one."""
    p, first = claim.position, last_good + 1
    where = f"position {p} was rewritten" if first == p else f"the history was rewritten at a position from {first} to {p}"
    where_zh = f"第 {p} 位被改写" if first == p else f"第 {first} 至 {p} 位之间的历史被改写"
    return _Bad(p, f"the hash at position {p} differs from {claim.source}: {where} and the later hashes recomputed",
                f"第 {p} 位的哈希与 {claim.source} 不符：{where_zh}，其后的哈希被重新计算")


# -- signed checkpoints ------------------------------------------------------------------------


class CheckpointError(Exception):
    """A key or checkpoint that cannot be used; ``zh`` is the same in Chinese."""

    def __init__(self, message: str, zh: str) -> None:
        super().__init__(message)
        self.zh = zh


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key's fingerprint: SHA-256 of its raw 32 bytes, 32 hex digits."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def generate_key(out: Path) -> tuple[Path, str]:
    """A new signing key: the private key to ``out`` (PEM, mode 0600), the public key beside it
    as ``out.pub``. Refuses to overwrite either. Returns the public key's path and fingerprint."""
    public_path = out.with_name(out.name + ".pub")
    for path in (out, public_path):
        if path.exists():
            raise CheckpointError(f"{path} exists; a key is never overwritten", f"{path} 已存在，密钥不会被覆盖")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not even briefly
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    with public_path.open("xb") as f:
        f.write(public_pem)
    return public_path, key_id(key.public_key())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot read the signing key {path}: {exc}", f"无法读取签名密钥 {path}：{exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{path} is not an Ed25519 private key", f"{path} 不是 Ed25519 私钥")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot read the public key {path}: {exc}", f"无法读取公钥 {path}：{exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError(f"{path} is not an Ed25519 public key", f"{path} 不是 Ed25519 公钥")
    return key


@dataclass(frozen=True)
class Checkpoint:
    """A signed log head. ``anchors[i]`` is the first :data:`ANCHOR_DIGITS` hex digits of the hash
    at position ``(i + 1) * anchor_every``. The signature covers every other field."""

    position: int
    hash: str
    recorded_at: str | None  # of the head row (None for an empty log)
    signed_at: str
    key_id: str
    anchor_every: int
    anchors: tuple[str, ...]
    signature: str = ""

    def body(self) -> bytes:
        """The signed bytes: canonical JSON of every field but the signature."""
        fields = {"format": FORMAT, "position": self.position, "hash": self.hash, "recorded_at": self.recorded_at,
                  "signed_at": self.signed_at, "key_id": self.key_id, "anchor_every": self.anchor_every,
                  "anchors": list(self.anchors)}
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> str:
        document = json.loads(self.body())
        document["signature"] = self.signature
        return json.dumps(document, indent=1) + "\n"

    @property
    def head(self) -> LogHead:
        return LogHead(self.position, self.hash)

    def claims(self, source: str) -> list[Claim]:
        return [*(Claim((i + 1) * self.anchor_every, a, f"{source} (anchor)") for i, a in enumerate(self.anchors)),
                Claim(self.position, self.hash, source)]

    def verify(self, public_key: Ed25519PublicKey, source: str) -> None:
        if self.key_id != key_id(public_key):
            raise CheckpointError(f"{source} is signed by key {self.key_id}, not by the public key given ({key_id(public_key)})",
                                  f"{source} 由密钥 {self.key_id} 签名，不是所给公钥（{key_id(public_key)}）")
        try:
            public_key.verify(base64.b64decode(self.signature, validate=True), self.body())
        except (InvalidSignature, ValueError) as exc:
            raise CheckpointError(f"{source}: the signature does not verify (forged or altered)",
                                  f"{source}：签名验证失败（伪造或被改动）") from exc

    @classmethod
    def parse(cls, text: str, source: str) -> Checkpoint:
        def bad(why: str) -> CheckpointError:
            return CheckpointError(f"{source} is not a guanhuai checkpoint ({why})", f"{source} 不是 guanhuai 检查点（{why}）")

        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise bad("not JSON") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise bad(f"format is not {FORMAT}")
        kinds = {"position": int, "hash": str, "signed_at": str, "key_id": str, "anchor_every": int, "anchors": list,
                 "signature": str}
        for name, kind in kinds.items():
            if not isinstance(doc.get(name), kind) or isinstance(doc.get(name), bool):
                raise bad(f"{name} is missing or not {kind.__name__}")
        if not isinstance(doc.get("recorded_at"), (str, type(None))):
            raise bad("recorded_at is not text")
        if not _hex(doc["hash"], 64) or not all(_hex(a, ANCHOR_DIGITS) for a in doc["anchors"]):
            raise bad(f"hash is not 64 hex digits or an anchor not {ANCHOR_DIGITS}")
        if doc["anchor_every"] < 1 or doc["position"] < 0 or len(doc["anchors"]) != doc["position"] // doc["anchor_every"]:
            raise bad("position, anchor_every and anchors do not agree")
        return cls(doc["position"], doc["hash"], doc["recorded_at"], doc["signed_at"], doc["key_id"],
                   doc["anchor_every"], tuple(doc["anchors"]), doc["signature"])


def _hex(value: object, digits: int) -> bool:
    return isinstance(value, str) and len(value) == digits and all(c in "0123456789abcdef" for c in value)


def load_checkpoints(paths: Sequence[Path]) -> list[tuple[str, Checkpoint]]:
    """Checkpoints from files, or from every ``*.json`` in a folder; each with its file's name."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
    loaded = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}", f"无法读取检查点 {path}：{exc}") from exc
        loaded.append((f"checkpoint {path.name}", Checkpoint.parse(text, f"checkpoint {path.name}")))
    return loaded


async def make_checkpoint(store: EventStore, key: Ed25519PrivateKey, *, previous: Checkpoint | None = None,
                          anchor_every: int = ANCHOR_EVERY,
                          on_progress: Callable[[int], None] | None = None) -> Checkpoint:
    """Sign the log's current head, after proving the chain up to it (from ``previous``, a
    checkpoint of this key, when given: what was signed once is never signed over a rewrite)."""
    head = await log_head(store)
    if previous is not None and previous.anchor_every != anchor_every:
        previous = None
    result = await verify_chain(store, on_progress, start=previous.head if previous else None,
                                until_position=head.position, anchor_every=anchor_every)
    if not result.ok:
        raise CheckpointError(f"not signing: the log is broken at position {result.first_bad_position}: {result.problem}",
                              f"拒绝签名：日志在第 {result.first_bad_position} 位损坏：{result.problem_zh}")
    known = previous.anchors if previous else ()
    new = tuple(h[:ANCHOR_DIGITS] for p, h in sorted(result.anchors.items()) if p > len(known) * anchor_every)
    checkpoint = Checkpoint(result.head_position, result.head_hash, result.head_recorded_at, utc_text(datetime.now(timezone.utc)),
                            key_id(key.public_key()), anchor_every, known + new)
    signature = base64.b64encode(key.sign(checkpoint.body())).decode()
    return replace(checkpoint, signature=signature)


def checkpoint_file_name(checkpoint: Checkpoint) -> str:
    return f"checkpoint-{checkpoint.position:012d}.json"


def write_checkpoint(directory: Path, checkpoint: Checkpoint) -> Path | None:
    """Write the checkpoint into ``directory`` under a name with its position; None when a
    checkpoint of that position is there already (a checkpoint file is never overwritten)."""
    path = directory / checkpoint_file_name(checkpoint)
    try:
        with path.open("x", encoding="utf-8") as f:
            f.write(checkpoint.to_json())
    except FileExistsError:
        return None
    return path


async def write_checkpoints_every(store: EventStore, key_path: Path, directory: Path, every_s: float,
                                  stop: asyncio.Event) -> None:
    """Until ``stop``: sign the head every ``every_s`` seconds into ``directory`` (when the log has
    grown). Each checkpoint is proven from the previous one this loop signed (at start, the newest
    in the folder signed by this key), so that the new rows alone are read."""
    log = get_logger()
    previous: Checkpoint | None = None
    while not stop.is_set():
        try:
            key = load_private_key(key_path)
            directory.mkdir(parents=True, exist_ok=True)
            if previous is None:
                previous = _newest_own(directory, key.public_key())
            checkpoint = await make_checkpoint(store, key, previous=previous)
            if previous is None or checkpoint.position > previous.position:
                path = write_checkpoint(directory, checkpoint)
                if path is not None:
                    log.info("audit_checkpoint_written", position=checkpoint.position, file=str(path))
            previous = checkpoint
        except CheckpointError as exc:
            log.error("audit_checkpoint_failed", error=str(exc))
        except (SQLAlchemyError, OSError) as exc:  # the database or the folder away: try again next time
            log.error("audit_checkpoint_failed", error=f"{type(exc).__name__}: {exc}")
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except asyncio.TimeoutError:
            pass


def _newest_own(directory: Path, public_key: Ed25519PublicKey) -> Checkpoint | None:
    """The checkpoint of the highest position in ``directory`` that this key signed, if any."""
    best: Checkpoint | None = None
    for path in directory.glob("checkpoint-*.json"):
        try:
            checkpoint = Checkpoint.parse(path.read_text(encoding="utf-8"), path.name)
            checkpoint.verify(public_key, path.name)
        except (CheckpointError, OSError, UnicodeDecodeError):
            continue
        if best is None or checkpoint.position > best.position:
            best = checkpoint
    return best
