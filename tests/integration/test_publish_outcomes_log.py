"""`guanhuai publish` finds each household's answer in the log by the id it was sent with, on
SQLite and PostgreSQL: enrollment's handler fed as the pipeline feeds it."""

from __future__ import annotations

import uuid

from guanhuai.outcomes import read_outcomes
from services.enrollment.handlers import EnrollmentHandler
from services.enrollment.tables import metadata as enrollment_tables
from shared.events.consumer import process_batch
from shared.events.inbox import metadata as inbox_tables
from shared.events.store import EventStore
from tests.integration.test_policy_numbers import sent
from tests.support.programme import households


async def test_each_household_sent_is_answered_by_its_own_policy_or_rejection(store: EventStore) -> None:
    await store.create_schema(inbox_tables, enrollment_tables)
    first, second = households(2)
    again = first.model_copy(update={"event_id": uuid.uuid4()})  # the same household under another id
    never_sent = households(1, seed=9)[0]
    await process_batch(store, EnrollmentHandler(), [sent("county", m, n) for n, m in enumerate([first, second, again], 1)])

    found = await read_outcomes(store, "county", [first, second, again, never_sent])

    assert set(found) == {first.event_id, second.event_id, again.event_id}
    assert found[first.event_id].policy_number and found[second.event_id].policy_number
    assert found[first.event_id].policy_number != found[second.event_id].policy_number
    assert found[again.event_id].rejected and found[again.event_id].reasons == ("household_already_insured",)
