"""How every service talks to Kafka: one broker factory, one topic set-up, one DLQ."""

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, TypeVar

from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from pydantic import BaseModel

from . import topics
from .settings import Settings

log = logging.getLogger("clients_import.kafka")
T = TypeVar("T")


def broker_options(settings: Settings) -> dict:
    """What every service's connection uses, whether a plain broker or FastStream's FastAPI router."""
    if not settings.kafka_bootstrap_servers:
        raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS is not set: start a broker with `clients-import broker`")
    return dict(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        max_request_size=settings.request_max_bytes,
        max_batch_size=1024 * 1024,
        linger_ms=2,
        logger=logging.getLogger("faststream"),
        log_level=logging.DEBUG,
    )


def build_broker(settings: Settings) -> KafkaBroker:
    return KafkaBroker(**broker_options(settings))


def consumer_options(settings: Settings, service: str) -> dict:
    """Batch consumption with manual commits: offsets move only after the handler returned."""
    return dict(
        group_id=settings.group(service),
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        max_partition_fetch_bytes=settings.request_max_bytes,
        fetch_max_bytes=max(50 * 1024 * 1024, settings.request_max_bytes),
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        session_timeout_ms=15_000,
        heartbeat_interval_ms=1_000,
        # A job's events are keyed by its id on every topic, so they sit on the same partition number of
        # each: range assignment gives those to one member, and one notifier counts each job alone.
        partition_assignment_strategy=(RangePartitionAssignor,),
    )


async def ensure_topics(settings: Settings) -> None:
    """Create the public topics where they are missing. Safe to call from every service."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs={"max.message.bytes": str(settings.request_max_bytes)},
            )
            for name in topics.ALL
            if name not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another service created them first
    finally:
        await admin.close()


class DeadLetter(NamedTuple):
    record: ConsumerRecord
    stage: str
    reason: str


# Room left in a DLQ record for its key, headers and the batch framing.
_DLQ_ENVELOPE = 16 * 1024
EXCERPT_BYTES = 64 * 1024


def dead_letter_record(letter: DeadLetter, max_bytes: int) -> tuple[bytes, bytes | None, dict[str, str]]:
    """The record as it came when it fits, else a bounded excerpt with its size and digest: it always fits."""
    record = letter.record
    value, key = record.value or b"", record.key
    headers = {
        "dlq.original.topic": record.topic,
        "dlq.original.partition": str(record.partition),
        "dlq.original.offset": str(record.offset),
        "dlq.original.size": str(len(value)),
        "dlq.stage": letter.stage,
        "dlq.reason": letter.reason[:2000],
    }
    if key is not None and len(key) > 1024:
        key = key[:1024]
        headers["dlq.key.excerpt"] = "true"
    if len(value) + _DLQ_ENVELOPE > max_bytes:
        headers["dlq.excerpt"] = "true"
        headers["dlq.original.sha256"] = hashlib.sha256(value).hexdigest()
        value = value[:EXCERPT_BYTES]
    return value, key, headers


async def send_to_dlq(broker: KafkaBroker, letters: Iterable[DeadLetter], max_bytes: int) -> None:
    """Every dead letter handed to the producer at once, then all acks awaited: no round trip each."""
    pending = []
    for letter in letters:
        value, key, headers = dead_letter_record(letter, max_bytes)
        pending.append(await broker.publish(value, topics.DLQ, key=key, headers=headers, no_confirm=True))
    await _confirmed(pending)


class Publication(NamedTuple):
    """One record to publish: where, under which key, and the event itself."""

    topic: str
    event: BaseModel
    key: str | None = None
    partition: int | None = None
    payload: bytes | None = None  # the event already encoded, when the planner had to measure it

    def encoded(self) -> bytes:
        return self.payload if self.payload is not None else self.event.model_dump_json().encode()


JSON_HEADERS = {"content-type": "application/json"}


async def publish_all(broker: KafkaBroker, publications: Iterable[Publication]) -> None:
    """Hand every record to the producer at once, then wait for all acks: no round trip per record."""
    pending = [
        await broker.publish(
            p.encoded(),
            p.topic,
            key=p.key.encode() if p.key else None,
            partition=p.partition,
            headers=JSON_HEADERS,
            no_confirm=True,
        )
        for p in publications
    ]
    await _confirmed(pending)


async def _confirmed(pending: list) -> None:
    """Wait for the broker's acks (the in-memory broker hands back none)."""
    waiting = [p for p in pending if p is not None]
    if waiting:
        await asyncio.gather(*waiting)


def value_of(parse: Callable[[bytes], T]) -> Callable[[ConsumerRecord], T]:
    """Decode a record from its value alone (most topics carry one kind of event)."""
    return lambda record: parse(record.value or b"")


def records_of(message: StreamMessage) -> Sequence[ConsumerRecord]:
    raw = message.raw_message
    return tuple(raw) if isinstance(raw, tuple | list) else (raw,)
