"""The garbage collector as a service tunes it (clients_import/collector.py): no collection walks a live
batch, and the cycles a batch leaves are collected when it ends."""

import gc
import weakref

import pytest

from clients_import.collector import after_batch, tune_after_start


@pytest.fixture
def tuned():
    thresholds = gc.get_threshold()
    tune_after_start()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.fixture
def collections():
    seen: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(count)
    yield seen
    gc.callbacks.remove(count)


def test_a_writer_sized_batch_runs_no_collection_while_it_lives(tuned, collections):
    # A writer's batch of 8,000 rows holds about 240,000 container objects until it is published.
    batch = [[index] for index in range(240_000)]
    assert collections == []
    del batch


class _Node:
    pass


def test_a_cycle_left_by_a_batch_is_collected_when_the_batch_ends(tuned, collections):
    node = _Node()
    node.itself = node  # a reference cycle: only the collector frees it
    alive = weakref.ref(node)
    del node
    assert alive() is not None
    after_batch()
    assert alive() is None
    assert collections == [0]  # the young generation only, not a walk of the whole heap
