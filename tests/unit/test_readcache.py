"""The read routes' shared answers: computed once for askers at once, never older than the freshness
bound, an error never kept, a bounded number kept."""

import asyncio
import json

import pytest

from services.api.readcache import ReadCache


class Counter:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls, self.delay, self.fail = 0, delay, fail

    async def __call__(self) -> dict:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise LookupError("no such job")
        return {"call": self.calls}


async def test_askers_at_once_share_one_computation():
    cache, compute = ReadCache(fresh_s=10), Counter(delay=0.05)
    answers = await asyncio.gather(*(cache.answer("k", compute) for _ in range(50)))
    assert compute.calls == 1 and {json.loads(a)["call"] for a in answers} == {1}


async def test_an_answer_is_not_served_after_its_freshness():
    cache, compute = ReadCache(fresh_s=0.05), Counter()
    assert json.loads(await cache.answer("k", compute)) == {"call": 1}
    assert json.loads(await cache.answer("k", compute)) == {"call": 1}
    await asyncio.sleep(0.08)
    assert json.loads(await cache.answer("k", compute)) == {"call": 2}
    assert json.loads(await cache.answer("other", compute)) == {"call": 3}


async def test_an_error_reaches_every_asker_and_is_not_kept():
    cache, compute = ReadCache(fresh_s=10), Counter(delay=0.02, fail=True)
    results = await asyncio.gather(*(cache.answer("k", compute) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, LookupError) for r in results) and compute.calls == 1
    compute.fail = False
    assert json.loads(await cache.answer("k", compute)) == {"call": 2}


async def test_an_asker_giving_up_does_not_take_the_answer_from_the_others():
    cache, compute = ReadCache(fresh_s=10), Counter(delay=0.05)
    first = asyncio.create_task(cache.answer("k", compute))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(cache.answer("k", compute))
    await asyncio.sleep(0.01)
    second.cancel()
    assert json.loads(await first) == {"call": 1}
    with pytest.raises(asyncio.CancelledError):
        await second


async def test_a_bounded_number_of_answers_is_kept():
    cache, compute = ReadCache(fresh_s=10, max_answers=3), Counter()
    for key in range(10):
        await cache.answer(key, compute)
    assert len(cache._answers) == 3  # noqa: SLF001 - the bound is the point
    assert json.loads(await cache.answer(9, compute)) == {"call": 10}  # the newest stays
    assert json.loads(await cache.answer(0, compute)) == {"call": 11}  # the oldest went
