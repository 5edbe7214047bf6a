"""The collector settings a service process runs with (guanhuai.perf.service_gc)."""

from __future__ import annotations

import gc
import weakref

from guanhuai.perf import service_gc


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_start_up_objects_are_frozen_and_the_young_generation_collected_less_often() -> None:
    old = gc.get_threshold()
    try:
        gc.unfreeze()
        service_gc(12_345)
        assert gc.get_threshold() == (12_345, 20, 100)
        assert gc.get_freeze_count() > 1000  # the modules, classes and schemas loaded so far
        # Cycles made after start-up are still the collector's: one is freed once enough objects
        # have been allocated after it.
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        garbage = [[] for _ in range(3 * 12_345)]
        assert gone() is None
        del garbage
    finally:
        gc.unfreeze()
        gc.set_threshold(*old)
