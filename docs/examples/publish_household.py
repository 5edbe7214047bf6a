"""Publish one household registration to guanhuai with plain nats-py, as a county system would.

    python publish_household.py nats://127.0.0.1:4222
    python publish_household.py nats://county:PASSWORD@nats-1:4222

The event id doubles as the JetStream message id (Nats-Msg-Id): sending the same event again,
for example after a time-out, is harmless. The log records it under
uuid5(PRODUCER_NAMESPACE, "county/<event id>") (printed below), so that no other producer can
claim its id.

With the production NATS accounts each user receives replies (here: JetStream's acknowledgement)
only on its own inbox prefix, ``_INBOX_<user>``: connect with that prefix.
"""

import asyncio
import json
import sys
import uuid
from urllib.parse import urlsplit

import nats

PRODUCER_NAMESPACE = uuid.UUID("f391b93e-dcc1-5c7f-8009-a50a7cd6a420")

EVENT = {
    "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, "county-example/2024/CG-0001")),
    "event_type": "HouseholdRegistered",
    "schema_version": 2,
    "occurred_at": "2024-03-01T09:30:00+08:00",
    "source": "chengguan-township-office",
    "payload": {
        "household_id": "CG-0001",
        "programme_year": 2024,
        "township": "chengguan",
        "category": "two_daughters_sterilised",
        "payer": "government",
        "units": 1,
        "paid_on": "2024-03-01",
        "members": [
            {"name": "王建国", "resident_id": "35042119750412031X", "relation": "head", "birth_date": "1975-04-12"},
            {"name": "李秀英", "resident_id": "35042119780903042X", "relation": "spouse", "birth_date": "1978-09-03"},
        ],
    },
}


async def main(url: str) -> None:
    user = urlsplit(url).username
    nc = await nats.connect(url, inbox_prefix=f"_INBOX_{user}" if user else "_INBOX")
    js = nc.jetstream()
    ack = await js.publish(
        "guanhuai.in.county.HouseholdRegistered",
        json.dumps(EVENT, ensure_ascii=False).encode(),
        headers={"Nats-Msg-Id": EVENT["event_id"]},
    )
    print(f"stored in {ack.stream} as message {ack.seq}{' (already there)' if ack.duplicate else ''}")
    print(f"recorded as event {uuid.uuid5(PRODUCER_NAMESPACE, 'county/' + EVENT['event_id'])}")
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"))
