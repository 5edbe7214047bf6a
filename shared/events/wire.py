"""Writing many NATS protocol messages to a nats-py connection at once, and reading many replies.

nats-py's ``publish`` is made for one message: it checks the subject with a regular expression,
builds the header block key by key (another regular expression per key), formats the command,
appends it to the client's pending buffer and looks at its flush queue, every time. The relay
publishes four to five events per household and the consumers ack every message they take, so
those per-message steps were a good part of their CPU.

:func:`publish_all` and :func:`ack_all` write the same bytes as ``publish`` would (``HPUB`` with a
``Nats-Msg-Id`` header; an ack is an empty ``PUB`` to the message's reply subject), joined into one
command, after the checks on the connection that ``publish`` makes (closed, draining, an outbound
buffer that is full while reconnecting, the payload limit). Some checks are stricter: a subject,
reply subject or message id that is empty or holds any whitespace is refused (nats-py trims a
header value, and refuses only spaces, tabs and line breaks in subjects), and nothing of a batch
is sent if any of it is refused. They read nats-py internals
(``_send_command``, ``_flush_pending``, ``_flush_queue``, ``_pending_data_size``,
``_max_pending_size``, ``_max_payload``); :func:`fast_wire_supported` checks they are there, and
without them each message goes through the library's own ``publish``/``ack``.

:func:`answer_inline` is the reading side, for a subscription that receives many small replies
(the relay's PubAcks, one per event): nats-py builds a ``Msg`` for each, puts it in the
subscription's queue and wakes the subscription's task to call its callback. Instead, a reply
without headers is handed to a plain function as it is read, with its subject and bytes; one with
headers (a status, such as "no responders") still takes nats-py's way, to the callback.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import nats.errors

_INTERNALS = ("_send_command", "_flush_pending", "_flush_queue", "_pending_data_size", "_max_pending_size",
              "_max_payload", "stats")
_NOT_IN_A_TOKEN = re.compile(r"[\s]")  # whitespace, CR and LF would break (or inject into) the protocol line
_MSG_ID = b"NATS/1.0\r\nNats-Msg-Id: "


def fast_wire_supported(nc: Any) -> bool:
    """Whether this nats-py client has the internals that :func:`publish_all` and :func:`ack_all` use."""
    return all(hasattr(nc, name) for name in _INTERNALS)


def _token(text: str, what: str) -> bytes:
    if not text or _NOT_IN_A_TOKEN.search(text):
        raise nats.errors.BadSubjectError(f"{what} {text!r}: empty or with whitespace")
    return text.encode()


class _Tokens(dict[str, bytes]):
    """Subjects checked and encoded once each (a batch uses a handful)."""

    def __missing__(self, key: str) -> bytes:
        value = self[key] = _token(key, "subject")
        return value


async def _send(nc: Any, data: bytes, messages: int, payload_bytes: int) -> None:
    # The checks ``Client.publish`` makes before it sends.
    if nc.is_closed:
        raise nats.errors.ConnectionClosedError
    if nc.is_draining_pubs:
        raise nats.errors.ConnectionDrainingError
    if not nc.is_connected and (nc._max_pending_size <= 0 or len(data) + nc._pending_data_size > nc._max_pending_size):
        raise nats.errors.OutboundBufferLimitError
    nc.stats["out_msgs"] += messages
    nc.stats["out_bytes"] += payload_bytes
    await nc._send_command(data)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


async def publish_all(nc: Any, messages: Sequence[tuple[str, bytes, str]], reply: str) -> None:
    """Publish ``messages`` (subject, body, message id: sent as ``Nats-Msg-Id``), each with the
    reply subject ``reply`` ("" for none), in order."""
    if not messages:
        return
    if not fast_wire_supported(nc):
        for subject, body, msg_id in messages:
            await nc.publish(subject, body, reply=reply, headers={"Nats-Msg-Id": msg_id})
        return
    reply_token = b" " + _token(reply, "reply subject") if reply else b""  # none: no reply token
    subjects = _Tokens()
    limit = nc._max_payload
    parts: list[bytes] = []
    payload_bytes = 0
    for subject, body, msg_id in messages:
        header = _MSG_ID + _token(msg_id, "message id") + b"\r\n\r\n"
        if len(body) > limit:
            raise nats.errors.MaxPayloadError
        parts.append(b"HPUB %s%s %d %d\r\n%s%s\r\n" % (
            subjects[subject], reply_token, len(header), len(header) + len(body), header, body))
        payload_bytes += len(body)
    await _send(nc, b"".join(parts), len(messages), payload_bytes)


async def ack_all(msgs: Sequence[Any]) -> None:
    """Ack JetStream messages (nats-py ``Msg``) of one connection, as ``Msg.ack`` does each."""
    if not msgs:
        return
    nc = getattr(msgs[0], "_client", None)
    if not fast_wire_supported(nc) or any(getattr(m, "_client", None) is not nc for m in msgs):
        for m in msgs:
            await m.ack()
        return
    parts, seen = [], set()
    for m in msgs:
        m._check_reply()  # raises for a message that is no JetStream message, or acked already
        if id(m) in seen:
            raise nats.errors.MsgAlreadyAckdError(m)  # as a second ``m.ack()`` would
        seen.add(id(m))
        parts.append(b"PUB %s 0\r\n\r\n" % _token(m.reply, "reply subject"))
    await _send(nc, b"".join(parts), len(msgs), 0)
    for m in msgs:
        m._ackd = True


_INLINE_ATTRIBUTE = "_guanhuai_inline_replies"
_READ_INTERNALS = ("_process_msg", "stats")


def answer_inline(nc: Any, subscription: Any, handler: Callable[[bytes, bytes], None]) -> bool:
    """From now on, hand each message of ``subscription`` (nats-py's, on the client ``nc``) that
    comes without headers to ``handler(subject, data)`` as the client reads it, instead of to the
    subscription's callback. Returns False, changing nothing, when the client lacks the internals
    this uses (``_process_msg``, ``_subs``, ``stats``), or for a subscription that nats-py handles
    in ways of its own (JetStream's, an old-style request's, one with a message limit); the callback
    then gets every message. ``handler`` runs inside the client's reading loop, so it must not
    block; a message it raises on goes to the callback instead (an error there is nats-py's to
    report, and does not stop the client's reading)."""
    sid = getattr(subscription, "_id", None)
    if sid is None or not isinstance(getattr(nc, "_subs", None), dict) or not all(hasattr(nc, n) for n in _READ_INTERNALS):
        return False
    if getattr(subscription, "_jsi", None) or getattr(subscription, "_future", None) or getattr(subscription, "_max_msgs", 0):
        return False
    handlers: dict[int, Callable[[bytes, bytes], None]] | None = nc.__dict__.get(_INLINE_ATTRIBUTE)
    if handlers is None:
        handlers = {}
        process = nc._process_msg

        async def _process_msg(sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
            inline = handlers.get(sid)
            if inline is None or headers or sid not in nc._subs:
                await process(sid, subject, reply, data, headers)
                return
            try:
                inline(subject, data)
            except Exception:  # noqa: BLE001 - nats-py's way then, to the callback
                await process(sid, subject, reply, data, headers)
                return
            nc.stats["in_msgs"] += 1
            nc.stats["in_bytes"] += len(data)

        nc.__dict__[_INLINE_ATTRIBUTE] = handlers
        nc._process_msg = _process_msg
    handlers[sid] = handler
    return True


def stop_answering_inline(nc: Any, subscription: Any) -> None:
    """Forget the inline handler :func:`answer_inline` gave ``subscription`` (if any)."""
    handlers = nc.__dict__.get(_INLINE_ATTRIBUTE) if hasattr(nc, "__dict__") else None
    if handlers is not None:
        handlers.pop(getattr(subscription, "_id", None), None)
