"""A stream's create or update request left unanswered is asked again (nats-server 2.15.1 leaves some
unanswered when several components of a fresh three-node cluster start at once: tests/e2e/test_cluster.py)."""

from __future__ import annotations

import nats.errors
import nats.js.errors
import pytest
from nats.js.api import StreamConfig

from shared.events.given_up import ensure_stream


class Unanswered:
    """A JetStream context whose server leaves the first ``silent`` requests unanswered."""

    def __init__(self, silent: int, exists: bool) -> None:
        self.silent, self.exists, self.calls = silent, exists, []

    async def _answer(self, what: str) -> None:
        self.calls.append(what)
        if self.silent:
            self.silent -= 1
            raise nats.errors.TimeoutError

    async def stream_info(self, name: str) -> None:
        await self._answer("info")
        if not self.exists:
            raise nats.js.errors.NotFoundError

    async def update_stream(self, config: StreamConfig) -> None:
        await self._answer("update")

    async def add_stream(self, config: StreamConfig) -> None:
        await self._answer("add")
        self.exists = True


@pytest.mark.parametrize("exists", [False, True])
async def test_an_unanswered_request_is_asked_again_until_the_stream_is_there(exists: bool) -> None:
    js = Unanswered(silent=2, exists=exists)
    await ensure_stream(js, StreamConfig(name="S", subjects=["s.>"]))
    assert js.calls[-1] == ("update" if exists else "add") and js.exists


async def test_a_server_that_never_answers_is_reported_after_the_last_attempt() -> None:
    js = Unanswered(silent=100, exists=False)
    with pytest.raises(nats.errors.TimeoutError):
        await ensure_stream(js, StreamConfig(name="S", subjects=["s.>"]), attempts=3)
    assert js.calls == ["info"] * 3
