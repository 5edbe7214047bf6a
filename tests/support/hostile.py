"""Hostile inbound messages: valid events, mutated the ways a broken or malicious producer would.

Each mutation takes a ``random.Random`` (seeded in end-to-end tests, driven by hypothesis in unit
tests) and one valid message as its JSON object, and returns the subject and bytes to send. The
categories are those of issue #6: wrong types, missing fields, huge strings and arrays, deep
nesting, invalid UTF-8, dates out of range, negative or enormous amounts, ID numbers with bad check
characters, duplicate members, SQL and markup in names; and beside them unknown event types,
wrong subjects and bytes that are not JSON at all.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from shared.events import EventMessage
from shared.events.subjects import INBOUND_PREFIX, PRODUCER_EVENTS, inbound_subject

Path = tuple[str | int, ...]
Json = Any

KIND_OF = {event_type: kind for kind, types in PRODUCER_EVENTS.items() for event_type in types}

SQL_AND_MARKUP = (
    "'; DROP TABLE events; --",
    "Robert'); DELETE FROM dead_letters WHERE ('1'='1",
    "\" OR 1=1 --",
    "<script>alert('关怀')</script>",
    "<img src=x onerror=alert(1)>",
    "王<b>建国</b>&amp;",
    "{{7*7}}${jndi:ldap://x/a}",
    "../../etc/passwd",
    "%s%n%x",
    "\u202e国建王",  # right-to-left override
    "名\u0000字",
    "\\u0000",
)
OUT_OF_RANGE_DATES = ("0001-01-01", "9999-12-31", "9999-12-30", "1900-01-01", "2024-02-30", "2023-02-29",
                      "2024-13-01", "2024-00-10", "10000-01-01", "-0001-01-01", "2024-1-1", "", "today",
                      "2024-03-01T00:00:00+08:00")
OUT_OF_RANGE_INSTANTS = ("9999-12-31T23:59:59-12:00", "9999-12-31T20:00:00+00:00", "0001-01-01T00:00:00+14:00",
                         "0001-01-01T03:00:00+00:00", "2024-03-01T09:00:00", "2024-03-01T25:00:00+08:00",
                         "2024-03-01T09:00:00+25:00", "1970-01-01T00:00:00Z", "not a time", "")
AMOUNTS = (-1, -100_00, -(2**63), 0, 10**13 + 1, 2**63, 2**64 + 1, 10**30, 1.5, 1e308, -0.0, "100", "1e3", True)
WRONG_TYPES = (0, -1, 1.25, True, False, None, "", "text", [], [1, 2], {}, {"a": 1})
INVALID_UTF8 = (b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xa0\xa1", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                b"\xc0\xaf", b"\xe2\x82")
NOT_JSON = (b"", b" ", b"null", b"[]", b"1", b'"HouseholdRegistered"', b"{", b"{'a': 1}", b"\xef\xbb\xbf{}",
            b"\x00\x01\x02", b"<xml/>", b"NaN", b'{"event_type": }')
UNKNOWN_TYPES = ("HouseholdTeleported", "", "householdregistered", "PolicyIssued", "ClaimPaid", "SubsidyApproved",
                 "__class__", "Household Registered", "*", ">")


def message_json(message: EventMessage) -> dict[str, Json]:
    return json.loads(message.model_dump_json())


def subject_of(message: dict[str, Json]) -> str:
    event_type = message["event_type"]
    return inbound_subject(KIND_OF[event_type], event_type)


def dump(obj: Json) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


# -- paths into a JSON tree ----------------------------------------------------------------------


def paths(obj: Json, prefix: Path = ()) -> Iterator[tuple[Path, Json]]:
    """Every value of a JSON tree with its path (the root excluded)."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        yield (*prefix, key), value
        yield from paths(value, (*prefix, key))


def get(obj: Json, path: Path) -> Json:
    for key in path:
        obj = obj[key]
    return obj


def put(obj: Json, path: Path, value: Json) -> None:
    get(obj, path[:-1])[path[-1]] = value


def pick(rng: random.Random, obj: Json, keep: Callable[[Path, Json], bool] = lambda p, v: True) -> Path | None:
    found = [p for p, v in paths(obj) if keep(p, v)]
    return rng.choice(found) if found else None


def named(*suffixes: str) -> Callable[[Path, Json], bool]:
    return lambda p, v: isinstance(p[-1], str) and p[-1].endswith(suffixes)


# -- the categories ------------------------------------------------------------------------------
# Each returns (subject, body). ``msg`` is the caller's own deep copy and may be changed.

Mutation = Callable[[random.Random, dict[str, Json], str], tuple[str, bytes]]


def wrong_type(rng: random.Random, msg: dict, subject: str) -> tuple[str, bytes]:
    path = pick(rng, msg)
    if path is not None:
        put(msg, path, rng.choice([v for v in WRONG_TYPES if type(v) is not type(get(msg, path))]))
    return subject, dump(msg)


def missing_field(rng: random.Random, msg: dict, subject: str) -> tuple[str, bytes]:
    path = pick(rng, msg, lambda p, v: isinstance(p[-1], str))
    if path is not None:
        del get(msg, path[:-1])[path[-1]]
    return subject, dump(msg)


def unknown_field(rng: random.Random, msg: dict, subject: str) -> tuple[str, bytes]:
    holder = pick(rng, msg, lambda p, v: isinstance(v, dict))
    target = get(msg, holder) if holder is not None and rng.random() < 0.7 else msg
    target[rng.choice(["x", "admin", "__proto__", "$where", "payload", "event_type"]) + "_extra"] = rng.choice(WRONG_TYPES)
    return subject, dump(msg)


def huge_string(rng: random.Random, msg: dict, subject: str) -> tuple[str, bytes]:
    path = pick(rng, msg, lambda p, v: isinstance(v, str))
    size = rng.choice([201, 1_000, 60_000, 200_000, 300_000])  # the last is over the 256 KiB limit
    text = rng.choice(["a", "王", "\u202e", "0"]) * size
    put(msg, path or ("event_type",), text)
    return subject, dump(msg)


def huge_array(rng: random.Random, msg: dict, subject: str) -> tuple[str, bytes]:
    lists = pick(rng, msg, lambda p, v: isinstance(v, list) and bool(v))
    if lists is not None and rng.random() < 0.7:
        items = get(msg, lists)
        put(msg, lists, [copy.deepcopy(items[i % len(items)]) for i in range(rng.choice([31, 500, 3_000]))])
    else:
        put(msg, pick(rng, msg) or ("payload",), list(range(rng.choice([1_000, 40_000]))))
    return subject, dump(msg)


def deep_nesting(rng: random.Random, msg: dict, subject: str) -> tuple[str, bytes]:
    depth = rng.choice([64, 300, 1_500, 20_000, 100_000])
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    marker = "\u2063deep\u2063"
    put(msg, pick(rng, msg) or ("payload",), marker)
    text = json.dumps(msg, ensure_ascii=False).replace(json.dumps(marker, ensure_ascii=False),
                                                        opener * depth + "1" + closer * depth, 1)
    return subject, text.encode()


def invalid_utf8(rng: random.Random, msg: dict, subject: str) -> tuple[str, bytes]:
    if rng.random() < 0.3:  # a lone surrogate, escaped: valid JSON, not a valid string
        path = pick(rng, msg, lambda p, v: isinstance(v, str)) or ("source",)
        put(msg, path, get(msg, path)[:3] + rng.choice(["\ud800", "\udfff", "\udc80x"]))
        return subject, json.dumps(msg).encode()
    body = dump(msg)
    quotes = [i for i, b in enumerate(body) if b == ord('"')]
    at = rng.choice(quotes) + 1 if quotes and rng.random() < 0.8 else rng.randrange(len(body) + 1)
    return subject, body[:at] + rng.choice(INVALID_UTF8) + body[at:]


def date_out_of_range(rng: random.Random, msg: dict, subject: str) -> tuple[str, bytes]:
    if rng.random() < 0.3:
        msg["occurred_at"] = rng.choice(OUT_OF_RANGE_INSTANTS)
    else:
        path = pick(rng, msg, named("_on", "_date", "_at", "cover_start", "cover_end")) or ("occurred_at",)
        put(msg, path, rng.choice(OUT_OF_RANGE_DATES))
    return subject, dump(msg)


def bad_amount(rng: random.Random, msg: dict, subject: str) -> tuple[str, bytes]:
    path = pick(rng, msg, named("_fen", "units", "_cap", "target_total", "target_government", "target_self",
                                "programme_year", "disability_grade", "payment_ratio", "schema_version"))
    marker = "\u2063big\u2063"
    if rng.random() < 0.15:  # an integer too long for Python to read by default
        put(msg, path or ("schema_version",), marker)
        return subject, dump(msg).replace(json.dumps(marker, ensure_ascii=False).encode(), b"9" * 5_000, 1)
    put(msg, path or ("schema_version",), rng.choice(AMOUNTS))
    return subject, dump(msg)


def bad_check_character(rng: random.Random, msg: dict, subject: str) -> tuple[str, bytes]:
    path = pick(rng, msg, named("resident_id"))
    if path is None:
        return wrong_type(rng, msg, subject)
    number: str = get(msg, path)
    variants = [
        number[:17] + ("0" if number[17] != "0" else "1"),  # wrong check character
        number[:17] + "x",  # lower-case x (the check character may or may not be X)
        number[:17] + "Y",
        number[:17],  # 17 characters
        number + "0",  # 19 characters
        "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in number),  # full-width digits
        number[:6] + "19800230" + number[14:],  # 30 February
        number[:6] + "00000000" + number[14:],
        " " + number,
        "",
    ]
    put(msg, path, rng.choice(variants))
    return subject, dump(msg)


def duplicate_members(rng: random.Random, msg: dict, subject: str) -> tuple[str, bytes]:
    payload = msg.get("payload", {})
    members = payload.get("members") if isinstance(payload, dict) else None
    if isinstance(members, list) and members:
        twin = copy.deepcopy(rng.choice(members))
        if rng.random() < 0.5:
            twin["name"] = "另一个人"  # same ID number, another name
        if rng.random() < 0.3:
            twin["resident_id"] = twin["resident_id"].lower()  # same number, lower-case x
        members.insert(rng.randrange(len(members) + 1), twin)
        return subject, dump(msg)
    lists = pick(rng, msg, lambda p, v: isinstance(v, list) and bool(v))
    if lists is not None:  # a plan line or a category twice
        items = get(msg, lists)
        items.append(copy.deepcopy(rng.choice(items)))
    return subject, dump(msg)


def sql_and_markup(rng: random.Random, msg: dict, subject: str) -> tuple[str, bytes]:
    path = pick(rng, msg, named("name", "label", "insurer", "household_id", "township", "village", "code", "plan_id",
                                "claim_id", "policy_number", "source"))
    put(msg, path or ("source",), rng.choice(SQL_AND_MARKUP))
    return subject, dump(msg)


def unknown_type(rng: random.Random, msg: dict, subject: str) -> tuple[str, bytes]:
    event_type = rng.choice(UNKNOWN_TYPES)
    msg["event_type"] = event_type
    kind = rng.choice(list(PRODUCER_EVENTS))
    token = event_type if event_type and all(c not in event_type for c in " .*>") else "Unknown"
    return f"{INBOUND_PREFIX}.{kind}.{token}", dump(msg)


def wrong_subject(rng: random.Random, msg: dict, subject: str) -> tuple[str, bytes]:
    event_type = msg["event_type"]
    kinds = [k for k in PRODUCER_EVENTS if k != KIND_OF.get(event_type)]
    others = [t for t in KIND_OF if t != event_type]
    return rng.choice([
        f"{INBOUND_PREFIX}.{rng.choice(kinds)}.{event_type}",  # the other producer's subject
        f"{INBOUND_PREFIX}.{KIND_OF.get(event_type, 'county')}.{rng.choice(others)}",  # another type's subject
        f"{subject}.extra",  # one token too many
    ]), dump(msg)


def not_json(rng: random.Random, msg: dict, subject: str) -> tuple[str, bytes]:
    body = dump(msg)
    return subject, rng.choice([*NOT_JSON, body[: rng.randrange(1, len(body))], bytes(rng.getrandbits(8) for _ in range(64))])


def bad_schema_version(rng: random.Random, msg: dict, subject: str) -> tuple[str, bytes]:
    msg["schema_version"] = rng.choice([0, -1, 1, 3, 99, 2**70, "2", 2.0, True, None, [2]])
    return subject, dump(msg)


CATEGORIES: dict[str, Mutation] = {
    "wrong_type": wrong_type,
    "missing_field": missing_field,
    "unknown_field": unknown_field,
    "huge_string": huge_string,
    "huge_array": huge_array,
    "deep_nesting": deep_nesting,
    "invalid_utf8": invalid_utf8,
    "date_out_of_range": date_out_of_range,
    "bad_amount": bad_amount,
    "bad_check_character": bad_check_character,
    "duplicate_members": duplicate_members,
    "sql_and_markup": sql_and_markup,
    "unknown_type": unknown_type,
    "wrong_subject": wrong_subject,
    "not_json": not_json,
    "bad_schema_version": bad_schema_version,
}


@dataclass(frozen=True)
class Hostile:
    category: str
    subject: str
    body: bytes
    msg_id: str  # the Nats-Msg-Id to send it with: its event id when it has one that is a string


def hostile(rng: random.Random, base: EventMessage, category: str, fresh_id: bool = True) -> Hostile:
    """One hostile message made from ``base`` (under a fresh event id unless told otherwise, so
    that it is never taken for a redelivery of another message)."""
    msg = message_json(base)
    if fresh_id:
        msg["event_id"] = msg["correlation_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    subject, body = CATEGORIES[category](rng, msg, subject_of(message_json(base)))
    msg_id = msg.get("event_id")
    if not _is_uuid(msg_id):  # mangled: a fresh one, or JetStream would drop look-alikes as duplicates
        msg_id = f"fuzz-{uuid.UUID(int=rng.getrandbits(128), version=4)}"
    return Hostile(category, subject, body, msg_id)


def _is_uuid(value: Json) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False
