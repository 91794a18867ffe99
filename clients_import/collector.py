"""The garbage collector tuned for a service that handles thousands of rows a batch.

CPython's default thresholds start a collection every 700 new container objects, and every so often a
full one that walks every object the process holds. A writer's batch makes hundreds of thousands of
objects (rows, results, parameter tuples) that live until the batch is published, while the long-lived
heap (modules, schemas, compiled statements) is large: `make bench-stages` measured the collector at a
quarter to a third of the writer's CPU. So, once a service has started, what exists is frozen out of
every collection (`gc.freeze`), and the young generation is collected once after each batch
(`after_batch`), when the batch's own objects are already freed and there is little left to walk,
rather than in the middle of it, where each collection walks the whole live batch and frees nothing
(measured: about 0.3 CPU s per 100,000 rows in the writer, 0.2 in the validator). GEN0 still starts a
collection inside a batch larger than any the stages fetch (a writer batch of 8,000 rows makes about
240,000). Reference cycles are collected as before, a batch at a time, so memory stays bounded by the
batch sizes (see the README's Performance section for the peak RSS).
"""

import gc

__all__ = ["GEN0", "after_batch", "tune_after_start"]

GEN0 = 400_000  # container objects allocated (net) between young collections; CPython's default is 700


def tune_after_start() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0, 20, 20)


def after_batch() -> None:
    """A batch is done and its objects freed: collect the young generation (its cycles) now, cheaply."""
    gc.collect(0)
