"""The relay's message body: the recorded event's JSON, written out field by field
(shared.events.relay.published_body), byte for byte what dumping the envelope as a dict gives."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events.relay import published_body
from shared.events.tables import utc_text

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)  # any text a column can hold
instants = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                        timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=8))]))


def dumped_as_a_dict(row: tuple) -> bytes:  # type: ignore[type-arg]
    """The body as the relay made it before: the envelope dumped as one dict."""
    (position, event_id, stream_id, version, event_type, schema_version, occurred_at, recorded_at, source,
     correlation_id, causation_id, payload) = row
    stamp = lambda v: v if isinstance(v, str) else utc_text(v)  # noqa: E731
    head = json.dumps({
        "event_id": event_id, "event_type": event_type, "schema_version": schema_version,
        "occurred_at": stamp(occurred_at), "source": source, "correlation_id": correlation_id,
        "causation_id": causation_id, "stream_id": stream_id, "stream_version": version, "position": position,
        "recorded_at": stamp(recorded_at),
    }, ensure_ascii=False)
    return (head[:-1] + ',"payload":' + payload + "}").encode()


@settings(database=None, max_examples=300)
@given(st.integers(1, 2**62), texts, texts, st.integers(1, 2**40), texts, st.integers(1, 99),
       instants | st.just("2024-03-01T01:30:00.000000+00:00"), instants, texts, texts, st.none() | texts,
       st.dictionaries(texts, texts | st.integers(), max_size=4))
def test_the_body_is_the_envelope_dumped_as_a_dict(position, event_id, stream_id, version, event_type,  # type: ignore[no-untyped-def]
                                                   schema_version, occurred_at, recorded_at, source, correlation_id,
                                                   causation_id, payload) -> None:
    row = (position, event_id, stream_id, version, event_type, schema_version, occurred_at, recorded_at, source,
           correlation_id, causation_id, json.dumps(payload, ensure_ascii=False))
    body = published_body(row)
    assert body == dumped_as_a_dict(row)
    assert published_body((*row[:-1], row[-1].encode())) == body  # the payload as SQLite's stored bytes
    decoded = json.loads(body)
    assert (decoded["event_id"], decoded["stream_id"], decoded["source"], decoded["causation_id"]) == (
        event_id, stream_id, source, causation_id)
    assert decoded["payload"] == payload and decoded["position"] == position


def test_quotes_backslashes_control_characters_and_chinese_are_escaped_as_json_does() -> None:
    row = (7, 'a"b', "s\\t", 1, "T\n", 1, "2024-03-01T01:30:00.000000+00:00", "2024-03-01T01:30:00.000000+00:00",
           "县\u0000", "c", None, '{"name": "张三"}')
    assert published_body(row) == dumped_as_a_dict(row) == published_body((*row[:-1], row[-1].encode()))
    assert json.loads(published_body(row))["source"] == "县\u0000"
