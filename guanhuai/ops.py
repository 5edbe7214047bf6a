"""Operators' and auditors' commands: publish, status, dead letters, replay, config."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from datetime import datetime
from typing import Any

import nats.js.errors
from sqlalchemy import Column, Connection, DateTime, Integer, MetaData, String, Table, func, insert, select

from guanhuai.errors import Expected
from shared.settings import Settings
from guanhuai.stack import CONSUMERS, STATE_FILE, connect
from shared.domain.identity import mask_in_text
from shared.events import EventMessage
from shared.events.given_up import GIVEN_UP_STREAM, given_up_subject, sweeper_durable
from shared.events.given_up import GONE_REASON as GIVEN_UP_GONE
from shared.events.given_up import REASON as GIVEN_UP_REASON
from shared.events.inbox import dead_letters
from shared.events.inbox import metadata as inbox_metadata
from shared.events.relay import publish_acked
from shared.events.store import EventStore
from shared.events.subjects import EVENTS_STREAM, PRODUCER_EVENTS, inbound_subject

retries_metadata = MetaData()
dead_letter_retries = Table(
    "dead_letter_retries", retries_metadata,
    Column("dead_letter_id", Integer, nullable=False), Column("nats_msg_id", String(100), primary_key=True),
    Column("retried_at", DateTime(timezone=True), nullable=False),
)


def running_stack(settings: Settings) -> dict[str, Any] | None:
    state = settings.data_dir / STATE_FILE
    try:
        return json.loads(state.read_text()) if state.exists() else None
    except (OSError, ValueError):  # being rewritten or removed by the stack this instant
        return None


def nats_url_for(settings: Settings, explicit: str | None) -> str:
    """--nats-url, else the running `guanhuai up`'s server, else GUANHUAI_NATS_URL (or guanhuai.env)
    when set; never a guessed default, which may be someone else's NATS."""
    if explicit:
        return explicit
    stack = running_stack(settings)
    if stack and stack.get("nats_url"):
        return str(stack["nats_url"])
    if "nats_url" in settings.model_fields_set:
        return settings.nats_url
    state = settings.data_dir / STATE_FILE
    raise Expected(f"没有运行中的 guanhuai up（{state} 不存在），也没有给出 --nats-url 或 GUANHUAI_NATS_URL",
                   f"no running stack ({state} not found) and no --nats-url or GUANHUAI_NATS_URL given")


async def open_event_log(url: str) -> EventStore:
    """The event log at ``url`` for reading: never creates a database (SQLite makes a file on
    connecting, so its file must exist first), and refuses one without the events table."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    missing = Expected(f"数据库不存在：{shown}", f"no event log at {shown}")
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:" and not database.startswith("file:"):
        from pathlib import Path

        if not Path(database).is_file():
            raise missing
    store = await EventStore.open(url, create=False)
    try:
        has_log = await store.read(lambda conn: inspect(conn).has_table("events"))
    except Exception as exc:  # noqa: BLE001 - whatever the driver says, one line for people
        await store.close()
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
        raise Expected(f"无法打开数据库 {shown}：{reason}", f"cannot open the event log at {shown}: {reason}") from exc
    if not has_log:
        await store.close()
        raise missing
    return store


def nats_tls_for(settings: Settings, explicit: str | None) -> ssl.SSLContext | None:
    """The TLS context for the server :func:`nats_url_for` picks: none for a running stack's
    embedded (plain-text) server, the settings' otherwise."""
    if not explicit:
        stack = running_stack(settings)
        if stack and stack.get("nats_url") and stack.get("nats_embedded"):
            return None
    return settings.nats_tls_context()


def kind_of(event: EventMessage, requested: str | None) -> str:
    if requested:
        return requested
    for kind, types in PRODUCER_EVENTS.items():
        if event.event_type in types:
            return kind
    raise ValueError(f"no producer sends {event.event_type}")


async def publish_events(url: str, events: list[EventMessage], kind: str | None,
                         tls: ssl.SSLContext | None = None,
                         progress: Callable[[int], None] | None = None,
                         connect_timeout: float = 5) -> tuple[int, int]:
    """Publish with the event id as Nats-Msg-Id, a thousand at a time, each acknowledged by
    JetStream (:func:`shared.events.relay.publish_acked`); returns (published, already there).
    ``progress`` is told how many are acknowledged so far."""
    messages = [(inbound_subject(kind_of(event, kind), event.event_type), event.model_dump_json().encode(),
                 str(event.event_id)) for event in events]
    nc = await connect(url, tls, timeout=connect_timeout)
    try:
        return await publish_acked(nc, messages, progress=progress)
    finally:
        await nc.close()


async def status(settings: Settings, nats_url: str | None, connect_timeout: float = 5) -> dict[str, Any]:
    out: dict[str, Any] = {"consumers": {}, "components": {}}
    stack = running_stack(settings)
    if stack:
        import os

        for name, pid in stack.get("pids", {}).items():
            try:
                os.kill(pid, 0)
                out["components"][name] = "running"
            except OSError:
                out["components"][name] = "stopped"
    store = await open_event_log(settings.database_url)
    try:
        out["log_head"] = await store.head_position()
        await store.create_schema(inbox_metadata, retries_metadata)

        def letters(conn: Connection) -> tuple[dict[str, int], int]:
            rows = conn.execute(select(dead_letters.c.consumer, func.count()).group_by(dead_letters.c.consumer))
            return {r[0]: r[1] for r in rows}, _given_up_not_retried(conn)

        out["dead_letters"], out["given_up_not_retried"] = await store.read(letters)
    finally:
        await store.close()
    url = nats_url_for(settings, nats_url)
    out["nats_url"] = _mask_url(url)
    nc = await connect(url, nats_tls_for(settings, nats_url), timeout=connect_timeout)
    try:
        js = nc.jetstream(timeout=5)
        try:
            info = await js.stream_info(EVENTS_STREAM)
        except nats.js.errors.NotFoundError:
            raise Expected(f"{out['nats_url']} 上没有 {EVENTS_STREAM} 流：这不是 guanhuai 的 NATS（或 relay 从未运行）",
                           f"no {EVENTS_STREAM} stream on {out['nats_url']}: not guanhuai's NATS "
                           "(or the relay never ran)") from None
        out["published_to_nats"] = info.state.last_seq
        out["relay_lag"] = max(out["log_head"] - info.state.last_seq, 0)
        for stream, durable in CONSUMERS:
            try:
                ci = await js.consumer_info(stream, durable)
                out["consumers"][durable] = {"pending": ci.num_pending, "ack_pending": ci.num_ack_pending,
                                             "redelivered": ci.num_redelivered, "waiting_pulls": ci.num_waiting,
                                             **await _given_up(js, stream, durable)}
            except Exception:  # noqa: BLE001 - the service never started
                out["consumers"][durable] = "missing"
    finally:
        await nc.close()
    out["healthy"] = (all(isinstance(c, dict) and not _troubled(c) for c in out["consumers"].values())
                      and out["given_up_not_retried"] == 0
                      and all(v == "running" for v in out["components"].values()))
    return out


def _given_up_not_retried(conn: Connection) -> int:
    """Dead letters of inputs JetStream gave up on (a crash loop) that nobody has sent again: until
    each is retried (`guanhuai dlq retry ID`), the system is not healthy."""
    retried = select(dead_letter_retries.c.dead_letter_id)
    query = select(func.count()).select_from(dead_letters).where(
        dead_letters.c.reason.in_((GIVEN_UP_REASON, GIVEN_UP_GONE)), dead_letters.c.id.not_in(retried))
    return conn.execute(query).scalar_one()


async def _given_up(js: Any, stream: str, durable: str) -> dict[str, int]:
    """How many inputs JetStream gave up on for this consumer (max_deliver reached: a crash loop, or
    a fault that outlasted the retries), and how many of those are not dead letters yet."""
    subject = given_up_subject(stream, durable)
    try:
        info = await js.stream_info(GIVEN_UP_STREAM, subjects_filter=subject)
        sweeper = await js.consumer_info(GIVEN_UP_STREAM, sweeper_durable(durable))
    except nats.js.errors.NotFoundError:
        return {"given_up": 0, "given_up_unswept": 0}
    return {"given_up": (info.state.subjects or {}).get(subject, 0),
            "given_up_unswept": sweeper.num_pending + sweeper.num_ack_pending}


def _troubled(consumer: dict[str, int]) -> bool:
    """Redelivered inputs (a crash loop in progress) or inputs given up on and not dead letters yet."""
    return consumer["redelivered"] > 0 or consumer["given_up_unswept"] > 0


async def list_dead_letters(settings: Settings, consumer: str | None, limit: int) -> list[dict[str, Any]]:
    store = await open_event_log(settings.database_url)
    try:
        await store.create_schema(inbox_metadata)
        query = select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit)
        if consumer:
            query = query.where(dead_letters.c.consumer == consumer)
        return await store.read(lambda conn: [_letter(r, raw=False) for r in conn.execute(query).mappings()])
    finally:
        await store.close()


def _letter(row: Any, raw: bool) -> dict[str, Any]:
    body: bytes = row["body"]
    text = body.decode("utf-8", errors="replace")
    return {
        "id": row["id"], "consumer": row["consumer"], "received_at": str(row["received_at"]), "subject": row["subject"],
        "reason": row["reason"], "detail": mask_in_text(row["detail"]), "event_id": row["event_id"],
        "nats": f"{row['nats_stream']}#{row['nats_sequence']}", "bytes": len(body),
        "headers": json.loads(row["headers"]),
        "body": text if raw else mask_in_text(text[:2000]),
    }


async def show_dead_letter(settings: Settings, letter_id: int, raw: bool) -> dict[str, Any] | None:
    store = await open_event_log(settings.database_url)
    try:
        row = await store.read(lambda conn: conn.execute(select(dead_letters).where(dead_letters.c.id == letter_id)).mappings().first())
        return _letter(row, raw=raw) if row else None
    finally:
        await store.close()


async def retry_dead_letter(settings: Settings, letter_id: int, nats_url: str | None, connect_timeout: float = 5) -> str:
    """Publish the original bytes again to their original subject, under a new Nats-Msg-Id (the
    dead letter itself is kept; the retry is recorded beside it)."""
    store = await open_event_log(settings.database_url)
    try:
        await store.create_schema(retries_metadata)

        def letter_and_tries(conn: Connection) -> tuple[Any, int]:
            row = conn.execute(select(dead_letters).where(dead_letters.c.id == letter_id)).first()
            if row is None:
                raise Expected(f"没有编号为 {letter_id} 的死信", f"no dead letter {letter_id}")
            tries = conn.execute(select(func.count()).select_from(dead_letter_retries)
                                 .where(dead_letter_retries.c.dead_letter_id == letter_id)).scalar_one()
            return row, tries

        row, tries = await store.read(letter_and_tries)
        msg_id = f"retry-{letter_id}-{tries + 1}"
        nc = await connect(nats_url_for(settings, nats_url), nats_tls_for(settings, nats_url), timeout=connect_timeout)
        try:
            headers = {k: v for k, v in json.loads(row.headers).items() if not k.startswith("Nats-")}
            await nc.jetstream(timeout=10).publish(row.subject, row.body, headers={**headers, "Nats-Msg-Id": msg_id})
        finally:
            await nc.close()
        retry = {"dead_letter_id": letter_id, "nats_msg_id": msg_id, "retried_at": datetime.now().astimezone()}
        await store.write(lambda tx: tx.connection.execute(insert(dead_letter_retries), retry))
        return msg_id
    finally:
        await store.close()


def masked_settings(settings: Settings) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    data = settings.model_dump(mode="json")
    if settings.db_url:
        data["db_url"] = make_url(settings.db_url).render_as_string(hide_password=True)
    data["database_url (effective)"] = make_url(settings.database_url).render_as_string(hide_password=True)
    data["nats_url"] = ",".join(_mask_url(u) for u in settings.nats_servers)
    for key in list(data):
        if any(word in key for word in ("token", "password", "secret", "creds")) and data[key]:
            data[key] = "***"
    return data


def settings_in_force(settings: Settings) -> dict[str, Any]:
    """:func:`masked_settings`, with the running stack's NATS and API port in force when there is one
    (its embedded NATS listens on a free port chosen at start, not on nats_url's)."""
    data = masked_settings(settings)
    stack = running_stack(settings)
    if stack:
        data["running_stack"] = {"nats_url (in force)": ",".join(_mask_url(u) for u in str(stack.get("nats_url") or "").split(",")),
                                 "api_port (in force)": stack.get("api_port"), "dashboard": stack.get("dashboard"),
                                 "pid": stack.get("up_pid"), "state": str(settings.data_dir / STATE_FILE)}
    else:
        data["running_stack"] = None
    return data


def _mask_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password or parts.username:
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def replay_lines(event: Any, mask: bool) -> str:
    text = event.model_dump_json()
    return mask_in_text(text) if mask else text
