"""The garbage collector tuned for a service that handles thousands of rows a batch.

CPython's default thresholds start a collection every 700 new container objects, and every so often a
full one that walks every object the process holds. A writer's batch makes hundreds of thousands of
short-lived objects (rows, results, parameter tuples) while the long-lived heap (modules, schemas,
compiled statements) is large: `make bench-stages` measured the collector at a quarter to a third of
the writer's CPU. So, once a service has started: what exists is frozen out of every collection
(`gc.freeze`), and young collections run every GEN0 allocations. Reference cycles are still collected;
memory stays bounded by the batch sizes (see the README's Performance section for the peak RSS).
"""

import gc

__all__ = ["GEN0", "tune_after_start"]

GEN0 = 50_000  # objects allocated (net) between young collections; CPython's default is 700


def tune_after_start() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0, 20, 20)
