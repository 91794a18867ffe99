"""The garbage collector tuned for a service that handles thousands of rows a batch.

CPython's default thresholds start a collection every 700 new container objects, and every so often a
full one that walks every object the process holds. A writer's batch makes hundreds of thousands of
objects (rows, results, parameter tuples) that live until the batch is published, while the long-lived
heap (modules, schemas, compiled statements) is large: `make bench-stages` measured the collector at a
quarter to a third of the writer's CPU. So, once a service has started (`tune_after_start`), what exists
is frozen out of every collection (`gc.freeze`), and young collections run every SERVING_GEN0 objects.

While a stage handles a batch (`batch()`, around each one its consumer hands over) they wait until
BATCH_GEN0: a collection in the middle of a batch walks the whole live batch and frees nothing
(measured: about 0.3 CPU s per 100,000 rows in the writer, 0.2 in the validator). When the last batch in
hand ends, its objects are already freed: the young generation is collected then, with little left to
walk, and the threshold goes back down, so between batches (and in the API, which has none) the
garbage of other work is collected as it goes. The older generations are collected on a schedule like
CPython's own: every OLDER_EVERY-th batch the middle generation too, every OLDER_EVERY²-th all three, so
a cycle that outlives its batch is still found. BATCH_GEN0 is above what a batch makes with the default
settings (a writer batch of 8,000 rows makes about 240,000 objects); with fewer partitions a writer's
records, and so its batches, hold more rows, and a collection may run inside a batch again: slower, not
wrong. Memory stays bounded by the batch sizes (see the README's Performance section for the peak RSS).
"""

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["BATCH_GEN0", "OLDER_EVERY", "SERVING_GEN0", "batch", "tune_after_start"]

SERVING_GEN0 = 50_000  # container objects allocated (net) between young collections; CPython's default is 700
BATCH_GEN0 = 400_000  # the same while a batch is in hand
OLDER_EVERY = 20  # collections of one generation between two of the next (CPython's default, too)

_SERVING = (SERVING_GEN0, OLDER_EVERY, OLDER_EVERY)
_batches_in_hand = 0
_tuned = False  # between batches: _SERVING once tuned, else the thresholds found when the first batch began
_untuned: tuple[int, ...] = gc.get_threshold()


def tune_after_start() -> None:
    global _tuned
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_SERVING)
    _tuned = True


@contextlib.contextmanager
def batch() -> Iterator[None]:
    """Around the handling of one batch. Stages sharing a process may overlap theirs: the threshold goes
    back down, and the young generation is collected, when the last one in hand ends. A process never
    tuned (a test's) gets its own thresholds back."""
    global _batches_in_hand, _untuned
    if _batches_in_hand == 0:
        _untuned = gc.get_threshold()
        gc.set_threshold(BATCH_GEN0, OLDER_EVERY, OLDER_EVERY)
    _batches_in_hand += 1
    try:
        yield
    finally:
        _batches_in_hand -= 1
        if _batches_in_hand == 0:
            _collect_after_batch()
            gc.set_threshold(*(_SERVING if _tuned else _untuned))


def _collect_after_batch() -> None:
    # CPython counts, for each older generation, the collections of the one below since its own last one.
    _, young_since, middle_since = gc.get_count()
    if young_since + 1 < OLDER_EVERY:
        gc.collect(0)
    elif middle_since + 1 < OLDER_EVERY:
        gc.collect(1)
    else:
        gc.collect(2)
