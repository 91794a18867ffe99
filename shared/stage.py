"""A stage of the pipeline, declared once, and the one rule every stage's consumer follows.

A `Stage` says which topics it consumes and publishes, how it reads one record, and its handler: a
named function from the decoded events of a batch to the publications they make, with the stage's
I/O (its `ports`) passed in. Runners (`clients_import.runner`) put stages on a real broker or on
FastStream's in-memory one; `StageRunner` is what both call with each consumed batch.

The rule: every consumed record ends in exactly one of *processed* or *dead-lettered*, whatever the
handler raises, and the partition moves on.
- A record that cannot be decoded is dead-lettered at once (decoding is deterministic).
- A batch whose handler fails is split in halves until the failing record stands alone; the others
  are processed (handlers are idempotent: the stages' ledgers make a second run change nothing).
- A transient failure (`is_transient`: the database or the broker unreachable, a time-out) while the
  stage's dependencies are unhealthy is retried with capped back-off for as long as they stay so,
  and dead-letters nothing. Any failure while they are healthy is the record's: a lone record gets
  `attempts` tries, then it is dead-lettered with the reason.
"""

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from .kafka import DeadLetter, Publication
from .metrics import BATCH_RECORDS, DEAD_LETTERS, RECORDS
from .unreadable import check_readable

__all__ = ["Output", "Stage", "Handled", "StageRunner", "RetryPolicy", "is_transient"]

log = logging.getLogger("clients_import.stage")


@dataclass(frozen=True)
class Output:
    """A topic a stage publishes, with the event it carries (for the AsyncAPI document)."""

    topic: str
    schema: Any
    title: str
    description: str


class Handled(NamedTuple):
    """What a handler hands back: the records to publish, and what to do once they are acknowledged."""

    publications: list[Publication]
    then: Callable[[], Awaitable[None]] | None = None


Handler = Callable[[list[Any], Any], Awaitable["Handled | list[Publication]"]]


@dataclass(frozen=True)
class Stage:
    name: str
    description: str
    consumes: tuple[str, ...]
    publishes: tuple[Output, ...]
    decode: Callable[[ConsumerRecord], Any]
    handle: Handler
    # Builds the handler's I/O from (settings, engine); may have `close()` and `background()`, and
    # `admit(event)`, which raises for an event the deployment's settings do not allow (dead-lettered at
    # once, like a record that does not decode).
    ports: Callable[..., Any]
    # Publications owed for a record that was dead-lettered (a `rejected` answer to its requester).
    refuse: Callable[[ConsumerRecord, BaseException], list[Publication]] | None = None
    max_records: int | None = None
    # Topics whose publications the stage reads back (its ports get `published`, a PublishedLog).
    reads_back: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # tries of a lone record whose failure is its own
    first_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    attempt_timeout_s: float = 120.0  # a handler that hangs longer has failed

    def backoff(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.first_backoff_s * 2 ** max(0, attempt - 1))


_TRANSIENT = (
    OperationalError, DisconnectionError, InterfaceError, ConnectionError, TimeoutError,
    KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError,
)


# PostgreSQL's SQLSTATE classes and codes of a server that is away, full, restarting or contended.
_TRANSIENT_SQLSTATE = ("08", "53", "57P", "40001", "40P01", "55P03")


def is_transient(error: BaseException) -> bool:
    """A failure that may pass by itself: a dependency unreachable, slow, busy, full or locked."""
    if isinstance(error, _TRANSIENT):
        return True
    if isinstance(error, DBAPIError):
        state = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None) or ""
        return error.connection_invalidated or state.startswith(_TRANSIENT_SQLSTATE)
    return False


def reason_of(error: BaseException) -> str:
    text = "".join(traceback.format_exception_only(error)).strip()
    return " ".join(text.split())[:2000] or type(error).__name__


Publisher = Callable[[Sequence[Publication]], Awaitable[None]]
DeadLetterer = Callable[[Sequence[DeadLetter]], Awaitable[None]]


@dataclass
class Tally:
    """What became of the records of the batches run so far."""

    processed: int = 0
    dead_lettered: int = 0
    retries: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class StageRunner:
    """Runs a stage's handler over consumed batches so that no record can stop the partition.

    It counts as it goes (`shared.metrics`): each batch's size, and each record's end, labelled by stage."""

    def __init__(
        self,
        stage: Stage,
        ports: Any,
        publish: Publisher,
        dead_letter: DeadLetterer,
        healthy: Callable[[], Awaitable[bool]],
        policy: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.stage, self.ports, self.policy = stage, ports, policy
        self._admit = getattr(ports, "admit", None) or (lambda _event: None)
        self._publish, self._dead_letter, self._healthy = publish, dead_letter, healthy
        self.tally = Tally()
        name = stage.name
        self._processed, self._dead = RECORDS.labels(name, "processed"), RECORDS.labels(name, "dead_lettered")
        self._dead_letters, self._batch_records = DEAD_LETTERS.labels(name), BATCH_RECORDS.labels(name)

    async def run(self, records: Sequence[ConsumerRecord]) -> None:
        self._batch_records.observe(len(records))
        decoded, letters, errors = [], [], []
        for record in records:
            try:
                check_readable(record)  # a placeholder for records the Kafka client could not read
                event = self.stage.decode(record)
                self._admit(event)
                decoded.append((record, event))
            except Exception as error:  # any decoding failure is the record's: it will never decode
                letters.append(DeadLetter(record, self.stage.name, reason_of(error)))
                errors.append(error)
        await self._bury(letters, errors)
        await self._process(decoded)

    async def _process(self, items: list[tuple[ConsumerRecord, Any]]) -> None:
        if not items:
            return
        try:
            await self._attempt(items, tries=1 if len(items) > 1 else self.policy.attempts)
        except Exception as error:
            if len(items) == 1:
                record = items[0][0]
                reason = f"failed {self.policy.attempts} times: {reason_of(error)}"
                await self._bury([DeadLetter(record, self.stage.name, reason)], [error])
                return
            middle = len(items) // 2
            log.info("splitting a failed batch", extra={"step": "stage.split", "stage": self.stage.name,
                                                         "records": len(items), "reason": reason_of(error)})
            await self._process(items[:middle])
            await self._process(items[middle:])
            return
        self.tally.processed += len(items)
        self._processed.inc(len(items))

    async def _attempt(self, items: list[tuple[ConsumerRecord, Any]], tries: int) -> None:
        failures = 0
        while True:
            try:
                async with asyncio.timeout(self.policy.attempt_timeout_s):
                    return await self._handle_and_publish([event for _, event in items])
            except Exception as error:
                if is_transient(error) and not await self._healthy_now():
                    # The dependency is away: wait for it without blaming the records.
                    await self._pause(self.tally.retries + 1, error)
                    continue
                failures += 1
                if failures >= tries:
                    raise
                await self._pause(failures, error)

    async def _handle_and_publish(self, events: list[Any]) -> None:
        handled = await self.stage.handle(events, self.ports)
        if not isinstance(handled, Handled):
            handled = Handled(list(handled))
        await self._publish(handled.publications)
        if handled.then is not None:
            await handled.then()

    async def _healthy_now(self) -> bool:
        try:
            async with asyncio.timeout(10):
                return await self._healthy()
        except Exception:
            return False

    async def _pause(self, attempt: int, error: BaseException) -> None:
        self.tally.retries += 1
        delay = self.policy.backoff(attempt)
        log.warning("retrying", extra={"step": "stage.retry", "stage": self.stage.name, "attempt": attempt,
                                       "delay_s": delay, "reason": reason_of(error)})
        await asyncio.sleep(delay)

    async def _bury(self, letters: list[DeadLetter], errors: list[BaseException]) -> None:
        """Dead-letter the records, then tell their requesters where the stage knows how. Retried until
        the broker takes them: a dead letter is never dropped."""
        if not letters:
            return
        attempt = 0
        while True:
            try:
                await self._dead_letter(letters)
                break
            except Exception as error:
                attempt += 1
                if not is_transient(error):
                    # Cannot happen by construction (dead letters are bounded); if it does, keep the
                    # headers, which say where the record is, rather than stop the partition.
                    letters = [letter._replace(record=_without_value(letter.record)) for letter in letters]
                await self._pause(attempt, error)
        self.tally.dead_lettered += len(letters)
        self._dead.inc(len(letters))
        self._dead_letters.inc(len(letters))
        for letter in letters:
            code = letter.reason.split(":", 1)[0][:80]
            self.tally.by_reason[code] = self.tally.by_reason.get(code, 0) + 1
            log.warning("dead letter", extra={"step": "dlq", "stage": letter.stage, "topic": letter.record.topic,
                                              "partition": letter.record.partition, "offset": letter.record.offset,
                                              "reason": letter.reason})
        await self._refuse(letters, errors)

    async def _refuse(self, letters: list[DeadLetter], errors: list[BaseException]) -> None:
        if self.stage.refuse is None:
            return
        for letter, error in zip(letters, errors, strict=True):
            try:
                publications = self.stage.refuse(letter.record, error)
                if publications:
                    await self._publish(publications)
            except Exception:  # telling the requester is a courtesy; the record is already safe in the DLQ
                log.exception("could not answer a dead-lettered request", extra={"step": "dlq.refuse"})


def _without_value(record: ConsumerRecord) -> ConsumerRecord:
    return ConsumerRecord(
        record.topic, record.partition, record.offset, record.timestamp, record.timestamp_type, None, b"",
        record.checksum, record.serialized_key_size, 0, record.headers,
    )
