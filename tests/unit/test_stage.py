"""The one rule of every consumer: each record ends processed or dead-lettered, and the partition moves on."""

import asyncio
import hashlib
import json

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError

from shared.kafka import DeadLetter, Publication, dead_letter_record
from shared.stage import Handled, RetryPolicy, Stage, StageRunner

FAST = RetryPolicy(attempts=3, first_backoff_s=0.001, max_backoff_s=0.002, attempt_timeout_s=0.5)


class Echo(BaseModel):
    n: int


def record(value: bytes, offset: int = 0) -> ConsumerRecord:
    return ConsumerRecord("t.in", 1, offset, 0, 0, b"k", value, None, 1, len(value), [])


def records(*values: int) -> list[ConsumerRecord]:
    return [record(json.dumps({"n": v}).encode(), offset=i) for i, v in enumerate(values)]


class Harness:
    """A stage over fakes: what it published, what it dead-lettered, and how healthy its dependencies are."""

    def __init__(self, handle, decode=lambda r: Echo.model_validate_json(r.value), refuse=None, healthy=True):
        self.published: list[Publication] = []
        self.dead: list[DeadLetter] = []
        self.health = [healthy]
        stage = Stage(name="test", description="", consumes=("t.in",), publishes=(), decode=decode, handle=handle,
                      ports=lambda *_: None, refuse=refuse)
        self.runner = StageRunner(stage, None, self._publish, self._dead_letter, self._healthy, FAST)

    async def _publish(self, publications):
        self.published += publications

    async def _dead_letter(self, letters):
        self.dead += letters

    async def _healthy(self):
        return self.health[-1]

    def numbers(self) -> list[int]:
        return sorted(p.event.n for p in self.published)


def echo_unless(*bad: int):
    calls = []

    async def handle(events, _ports):
        calls.append([e.n for e in events])
        if any(e.n in bad for e in events):
            raise ValueError(f"cannot take {[e.n for e in events if e.n in bad]}")
        return [Publication("t.out", e) for e in events]

    return handle, calls


async def test_a_record_that_does_not_decode_is_dead_lettered_and_the_others_are_processed():
    handle, _ = echo_unless()
    harness = Harness(handle)
    batch = [*records(1, 2), record(b"[" * 5000, offset=7), record(b"\xff\xfe", offset=8), *records(3)]

    await harness.runner.run(batch)

    assert harness.numbers() == [1, 2, 3]
    assert [letter.record.offset for letter in harness.dead] == [7, 8]
    assert all(letter.stage == "test" and letter.reason for letter in harness.dead)


async def test_one_failing_record_is_split_out_the_others_are_published_once_and_it_alone_is_dead_lettered():
    handle, calls = echo_unless(6)
    harness = Harness(handle)

    await harness.runner.run(records(*range(1, 9)))

    assert harness.numbers() == [1, 2, 3, 4, 5, 7, 8]  # each once: a failed call publishes nothing
    assert [json.loads(letter.record.value)["n"] for letter in harness.dead] == [6]
    assert "failed 3 times" in harness.dead[0].reason and "cannot take [6]" in harness.dead[0].reason
    assert calls.count([6]) == 3  # a lone record gets its tries
    assert harness.runner.tally.processed == 7 and harness.runner.tally.dead_lettered == 1


async def test_any_exception_counts_even_the_ones_nobody_expects():
    async def handle(events, _ports):
        if any(e.n == 2 for e in events):
            raise RecursionError("maximum recursion depth exceeded")
        return [Publication("t.out", e) for e in events]

    harness = Harness(handle)
    await harness.runner.run(records(1, 2, 3))

    assert harness.numbers() == [1, 3] and len(harness.dead) == 1


async def test_a_publication_the_broker_refuses_is_the_records_fault():
    async def handle(events, _ports):
        return [Publication("t.out", e) for e in events]

    harness = Harness(handle)

    async def publish(publications):
        if any(p.event.n == 2 for p in publications):
            raise MessageSizeTooLargeError()
        harness.published += publications

    harness.runner._publish = publish
    await harness.runner.run(records(1, 2, 3))

    assert harness.numbers() == [1, 3]
    assert "MessageSizeTooLarge" in harness.dead[0].reason


async def test_while_the_database_is_away_records_wait_and_none_is_dead_lettered():
    failures = iter(range(5))

    async def handle(events, _ports):
        if next(failures, None) is not None:
            raise OperationalError("SELECT 1", {}, Exception("unable to open database file"))
        return [Publication("t.out", e) for e in events]

    harness = Harness(handle, healthy=False)
    await harness.runner.run(records(1, 2, 3, 4))

    assert harness.numbers() == [1, 2, 3, 4]
    assert harness.dead == [] and harness.runner.tally.retries == 5


async def test_a_transient_looking_failure_while_everything_is_healthy_is_the_records_and_ends_in_the_dlq():
    async def handle(events, _ports):
        if any(e.n == 3 for e in events):
            raise KafkaConnectionError("but the broker answers pings")
        return [Publication("t.out", e) for e in events]

    harness = Harness(handle, healthy=True)
    await harness.runner.run(records(1, 2, 3))

    assert harness.numbers() == [1, 2] and len(harness.dead) == 1


async def test_a_handler_that_hangs_is_timed_out_and_its_record_dead_lettered():
    async def handle(events, _ports):
        if any(e.n == 2 for e in events):
            await asyncio.sleep(3600)
        return [Publication("t.out", e) for e in events]

    harness = Harness(handle)
    await asyncio.wait_for(harness.runner.run(records(1, 2)), timeout=10)

    assert harness.numbers() == [1] and "TimeoutError" in harness.dead[0].reason


async def test_what_a_handler_does_after_publishing_runs_only_once_published():
    done = []

    async def handle(events, _ports):
        async def then():
            done.append([e.n for e in events])

        return Handled([Publication("t.out", e) for e in events], then)

    harness = Harness(handle)
    await harness.runner.run(records(1, 2))
    assert done == [[1, 2]] and harness.numbers() == [1, 2]


async def test_a_dead_lettered_request_is_answered_and_a_failing_answer_does_not_stop_anything():
    answered = []

    def refuse(rec, error):
        answered.append(rec.offset)
        if rec.offset == 1:
            raise RuntimeError("cannot answer")
        return [Publication("t.answers", Echo(n=-1))]

    handle, _ = echo_unless()
    harness = Harness(handle, refuse=refuse)
    await harness.runner.run([record(b"junk", 0), record(b"junk", 1), *records(5)])

    assert answered == [0, 1] and len(harness.dead) == 2
    assert sorted(p.event.n for p in harness.published) == [-1, 5]


def test_a_dead_letter_always_fits_a_record_too_large_becomes_an_excerpt_with_its_size_and_digest():
    big = b"x" * 2_000_000
    value, key, headers = dead_letter_record(DeadLetter(record(big, offset=42), "uploader", "too big"), 1_000_000)

    assert len(value) <= 64 * 1024 and big.startswith(value)
    assert headers["dlq.excerpt"] == "true"
    assert headers["dlq.original.size"] == str(len(big))
    assert headers["dlq.original.sha256"] == hashlib.sha256(big).hexdigest()
    assert (headers["dlq.original.topic"], headers["dlq.original.offset"]) == ("t.in", "42")
    assert len(value) + sum(len(k) + len(v) for k, v in headers.items()) + len(key) < 1_000_000


def test_a_record_that_fits_goes_to_the_dlq_unchanged():
    value, _, headers = dead_letter_record(DeadLetter(record(b'{"n": 1}'), "validator", "x" * 5000), 1_000_000)
    assert value == b'{"n": 1}' and "dlq.excerpt" not in headers and len(headers["dlq.reason"]) == 2000
