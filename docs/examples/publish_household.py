"""Publish one household registration to guanhuai with plain nats-py, as a county system would.

    python publish_household.py nats://127.0.0.1:4222

The event id doubles as the JetStream message id (Nats-Msg-Id): sending the same event again,
for example after a time-out, is harmless.
"""

import asyncio
import json
import sys
import uuid

import nats

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
    nc = await nats.connect(url)
    js = nc.jetstream()
    ack = await js.publish(
        "guanhuai.in.county.HouseholdRegistered",
        json.dumps(EVENT, ensure_ascii=False).encode(),
        headers={"Nats-Msg-Id": EVENT["event_id"]},
    )
    print(f"stored in {ack.stream} as message {ack.seq}{' (already there)' if ack.duplicate else ''}")
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"))
