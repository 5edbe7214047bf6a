"""The hash chain that makes the log tamper-evident.

``hash = sha256(prev_hash | position | event_id | stream_id | stream_version | event_type |
schema_version | occurred_at | recorded_at | source | correlation_id | causation_id | payload)``,
every text field length-prefixed so that no two different rows encode alike, and timestamps in
their canonical UTC text (:func:`.tables.utc_text`). Changing any stored field, or removing or
reordering a row, breaks the chain from that position on.
"""

from __future__ import annotations

from hashlib import sha256

GENESIS = "0" * 64


def chain_hash(
    prev_hash: str,
    position: int,
    event_id: str,
    stream_id: str,
    stream_version: int,
    event_type: str,
    schema_version: int,
    occurred_at: str,
    recorded_at: str,
    source: str,
    correlation_id: str,
    causation_id: str | None,
    payload: str,
    payload_utf8: bytes | None = None,
) -> str:
    """The row's hash. ``payload_utf8``, when given, is ``payload.encode()`` already made (the
    writer has the payload's JSON as UTF-8 bytes first): the same hash, without encoding the
    payload a second time."""
    cause = "-" if causation_id is None else f"{len(causation_id)}:{causation_id}"
    head = (
        f"{prev_hash}|{position}|{event_id}|{len(stream_id)}:{stream_id}|{stream_version}|"
        f"{len(event_type)}:{event_type}|{schema_version}|{occurred_at}|{recorded_at}|"
        f"{len(source)}:{source}|{correlation_id}|{cause}|{len(payload)}:"
    )
    digest = sha256(head.encode())
    digest.update(payload.encode() if payload_utf8 is None else payload_utf8)
    return digest.hexdigest()
