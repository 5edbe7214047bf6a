"""The collector in a service process (shared.events.collector): start-up objects frozen, a young
threshold a batch does not reach, and collections between batches."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from shared.events import collector
from shared.events.collector import after_batch, service_gc


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def restored() -> Iterator[None]:
    old, batches = gc.get_threshold(), collector._batches
    yield
    gc.unfreeze()
    gc.set_threshold(*old)
    collector._batches = batches


def test_start_up_objects_are_frozen_and_the_young_generation_collected_less_often(restored: None) -> None:
    gc.unfreeze()
    service_gc(12_345)
    assert gc.get_threshold() == (12_345, 20, 100)
    assert gc.get_freeze_count() > 1000  # the modules, classes and schemas loaded so far
    # Cycles made after start-up are still the collector's: one is freed once enough objects
    # have been allocated after it.
    gone = _cycle()
    garbage = [[] for _ in range(3 * 12_345)]
    assert gone() is None
    del garbage


def test_after_each_batch_the_young_generation_is_collected_and_the_older_ones_now_and_then(restored: None) -> None:
    service_gc(collector.CONSUMER_YOUNG_THRESHOLD)
    collected: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collected.append(info["generation"])

    gc.callbacks.append(seen)
    try:
        collector._batches = 0
        gone = _cycle()
        assert gone() is not None  # far below the threshold: nothing collects it by itself
        after_batch()
        assert gone() is None and collected == [0]
        for _ in range(collector.OLDEST_EVERY - 1):
            after_batch()
    finally:
        gc.callbacks.remove(seen)
    assert collected.count(2) == 1 and collected[-1] == 2
    assert collected.count(1) == collector.OLDEST_EVERY // collector.OLDER_EVERY - 1
    assert len(collected) == collector.OLDEST_EVERY
