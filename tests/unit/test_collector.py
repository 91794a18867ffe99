"""The garbage collector as a service tunes it (clients_import/collector.py): no collection walks a live
batch, the cycles a batch leaves are collected when it ends, those that outlive it later, and outside
batches (between them, or in the API, which has none) garbage is collected as it goes."""

import gc
import weakref

import pytest

from clients_import import collector
from clients_import.collector import OLDER_EVERY, batch, tune_after_start


@pytest.fixture
def tuned(monkeypatch):
    thresholds = gc.get_threshold()
    monkeypatch.setattr(collector, "_tuned", False)
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


class _Node:
    pass


def _cycle() -> weakref.ref:
    node = _Node()
    node.itself = node  # a reference cycle: only the collector frees it
    return weakref.ref(node)


def test_a_writer_sized_batch_runs_no_collection_while_it_lives(tuned, collections):
    with batch():
        # A writer's batch of 8,000 rows holds about 240,000 container objects until it is published.
        rows = [[index] for index in range(240_000)]
        assert collections == []
        del rows


def test_a_cycle_left_by_a_batch_is_collected_when_the_batch_ends(tuned, collections):
    with batch():
        alive = _cycle()
        assert alive() is not None
    assert alive() is None
    assert collections == [0]  # the young generation only, not a walk of the whole heap


def test_overlapping_batches_are_collected_once_the_last_one_ends(tuned, collections):
    with batch():
        with batch():
            alive = _cycle()
        rows = [[index] for index in range(240_000)]  # the outer batch is still in hand
        del rows
        assert collections == [] and alive() is not None
    assert alive() is None


def test_a_cycle_that_outlives_its_batch_is_collected_when_the_older_generation_s_turn_comes(tuned, collections):
    node = _Node()
    node.itself = node
    alive = weakref.ref(node)
    with batch():
        pass  # still in use when the batch ends: it moves to the older generation
    del node
    for _ in range(OLDER_EVERY):
        with batch():
            pass
    assert alive() is None
    assert 1 in collections


def test_the_oldest_generation_is_walked_every_so_many_batches(tuned, collections):
    for _ in range(OLDER_EVERY * OLDER_EVERY):
        with batch():
            pass
    assert collections.count(2) == 1
    assert collections.count(1) == OLDER_EVERY - 1


def test_outside_batches_the_cycles_of_other_work_are_collected_as_it_goes(tuned, collections):
    with batch():
        pass
    collections.clear()
    for _ in range(60_000):  # an API's requests leave cycles behind, and no batch ends to collect them
        _cycle()
    assert 0 in collections


def test_a_process_never_tuned_gets_its_own_thresholds_back_after_a_batch(monkeypatch):
    monkeypatch.setattr(collector, "_tuned", False)
    thresholds = gc.get_threshold()
    with batch():
        assert gc.get_threshold() != thresholds
    assert gc.get_threshold() == thresholds
