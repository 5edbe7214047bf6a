"""The cycle collector in a long-running service process.

A service's start-up leaves a few hundred thousand long-lived objects (the libraries' modules,
classes and schemas): :func:`service_gc` moves them out of the collector's sight (``gc.freeze``),
so no collection walks them again.

A batch then allocates tens of thousands of short-lived container objects (models, rows,
messages), nearly all freed by reference counting when the batch is done. A young-generation
collection that starts in the middle of a batch walks every object the batch still holds (about
10 ms for a batch of 500 households, measured here), and with the default threshold of 700 that
happened several times per batch. So a consuming service sets a young threshold that a batch of
500 does not reach (one of 2,000 reaches it about three times: 0.02 s of a service's CPU in a
20,000-household `bench pipeline` run), and collects after each batch (:func:`after_batch`),
when the young generation is nearly empty: cycles are still collected, at a fraction of the cost.
"""

from __future__ import annotations

import gc

CONSUMER_YOUNG_THRESHOLD = 200_000  # more than a batch of 500 inputs allocates (see above for 2,000)
OLDER_EVERY = 20  # batches between collections of the middle generation
OLDEST_EVERY = 1_000  # batches between full collections (the frozen start-up objects are not walked)

_batches = 0


def service_gc(young_threshold: int = 20_000) -> None:
    """Collector settings for a service process, set once its modules are loaded."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, 20, 100)


def after_batch() -> None:
    """A batch is done and its objects are freed: collect the young generation now, the middle
    one every :data:`OLDER_EVERY` batches and all of them every :data:`OLDEST_EVERY`. (Each of
    these collections also counts towards the next generation's threshold, as the collector's own
    do; with these intervals neither older threshold is reached first. Written for CPython 3.11's
    three-generation collector.)"""
    global _batches
    _batches += 1
    gc.collect(2 if _batches % OLDEST_EVERY == 0 else 1 if _batches % OLDER_EVERY == 0 else 0)
