"""Publish one household registration with plain nats-py and wait for what became of it: its
PolicyIssued or HouseholdRejected on guanhuai.events.>.

    python wait_for_outcome.py nats://127.0.0.1:4222

guanhuai records the household under uuid5(PRODUCER_NAMESPACE, "county/<event id>"), and its
outcome names that id as its causation_id (and carries our correlation_id). The example reads
the outcomes with an ordered JetStream consumer on GUANHUAI_EVENTS, made before publishing so that
the outcome cannot pass unseen. When the household was sent before (the acknowledgement says
duplicate), its outcome may be older than that consumer: it then reads the outcomes from the
stream's start. A real system keeps one durable consumer and matches each outcome as it comes.

The credential must be allowed to read guanhuai.events.PolicyIssued and HouseholdRejected
(docs/integration.md, "Following your events to their outcome"). Exit code 0 with an outcome,
1 when none came within the time-out.
"""

import asyncio
import json
import sys
import uuid
from urllib.parse import urlsplit

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

PRODUCER_NAMESPACE = uuid.UUID("f391b93e-dcc1-5c7f-8009-a50a7cd6a420")
OUTCOMES = ["guanhuai.events.PolicyIssued", "guanhuai.events.HouseholdRejected"]

EVENT_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "county-example/2024/CG-0002"))
EVENT = {
    "event_id": EVENT_ID,
    "event_type": "HouseholdRegistered",
    "schema_version": 2,
    "occurred_at": "2024-03-02T10:00:00+08:00",
    "source": "chengguan-township-office",
    "correlation_id": EVENT_ID,
    "payload": {
        "household_id": "CG-0002",
        "programme_year": 2024,
        "township": "chengguan",
        "category": "single_daughter_certified",
        "payer": "government",
        "units": 1,
        "paid_on": "2024-03-02",
        "members": [
            {"name": "陈志强", "resident_id": "350421196907210155", "relation": "head", "birth_date": "1969-07-21"},
            {"name": "林美华", "resident_id": "350421197111300264", "relation": "spouse", "birth_date": "1971-11-30"},
        ],
    },
}


async def outcomes(js, since_start: bool):
    config = ConsumerConfig(filter_subjects=OUTCOMES,
                            deliver_policy=DeliverPolicy.ALL if since_start else DeliverPolicy.NEW)
    return await js.subscribe(OUTCOMES[0], stream="GUANHUAI_EVENTS", ordered_consumer=True, config=config)


async def main(url: str, timeout: float = 60) -> int:
    user = urlsplit(url).username
    nc = await nats.connect(url, inbox_prefix=f"_INBOX_{user}" if user else "_INBOX")
    js = nc.jetstream()
    recorded = str(uuid.uuid5(PRODUCER_NAMESPACE, f"county/{EVENT_ID}"))
    subscription = await outcomes(js, since_start=False)
    ack = await js.publish("guanhuai.in.county.HouseholdRegistered", json.dumps(EVENT, ensure_ascii=False).encode(),
                           headers={"Nats-Msg-Id": EVENT_ID})
    print(f"sent {EVENT_ID}{' (already there)' if ack.duplicate else ''}; recorded as {recorded}")
    if ack.duplicate:
        await subscription.unsubscribe()
        subscription = await outcomes(js, since_start=True)
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                message = await subscription.next_msg(timeout=left)
            except nats.errors.TimeoutError:
                break
            event = json.loads(message.data)
            if event["causation_id"] != recorded:
                continue  # another household's outcome
            payload = event["payload"]
            print(f"correlation id {event['correlation_id']} (ours: {EVENT['correlation_id']})")
            if event["event_type"] == "PolicyIssued":
                print(f"PolicyIssued {payload['policy_number']}: {len(payload['insured'])} insured, "
                      f"{len(payload['excluded'])} left out {[m['reason'] for m in payload['excluded']]}")
            else:
                print(f"HouseholdRejected: {payload['reasons']}, left out {[m['reason'] for m in payload['excluded']]}")
            return 0
        print(f"no outcome within {timeout:g} s: are guanhuai's services running?")
        return 1
    finally:
        await nc.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222")))
