"""How every service talks to Kafka: one broker factory, one topic set-up, one DLQ."""

import asyncio
import logging
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from pydantic import BaseModel, ValidationError

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


def dead_letter_headers(record: ConsumerRecord, stage: str, error: BaseException | str) -> dict[str, str]:
    """Kafka Connect's convention: the failed record goes on unchanged, the headers say where and why."""
    reason = error if isinstance(error, str) else "".join(traceback.format_exception_only(error)).strip()
    return {
        "dlq.original.topic": record.topic,
        "dlq.original.partition": str(record.partition),
        "dlq.original.offset": str(record.offset),
        "dlq.stage": stage,
        "dlq.reason": reason[:2000],
    }


async def send_to_dlq(broker: KafkaBroker, records: Iterable[tuple[ConsumerRecord, str, BaseException | str]]) -> None:
    """Every dead letter handed to the producer at once, then all acks awaited: no round trip each."""
    pending = []
    for record, stage, error in records:
        headers = dead_letter_headers(record, stage, error)
        log.warning("dead letter", extra={"step": "dlq", **headers})
        pending.append(await broker.publish(record.value, topics.DLQ, key=record.key, headers=headers, no_confirm=True))
    if pending:
        await asyncio.gather(*pending)


class Publication(NamedTuple):
    """One record to publish: where, under which key, and the event itself."""

    topic: str
    event: BaseModel
    key: str | None = None
    partition: int | None = None


JSON_HEADERS = {"content-type": "application/json"}


async def publish_all(broker: KafkaBroker, publications: Iterable[Publication]) -> None:
    """Hand every record to the producer at once, then wait for all acks: no round trip per record."""
    pending = [
        await broker.publish(
            p.event.model_dump_json().encode(),
            p.topic,
            key=p.key.encode() if p.key else None,
            partition=p.partition,
            headers=JSON_HEADERS,
            no_confirm=True,
        )
        for p in publications
    ]
    if pending:
        await asyncio.gather(*pending)


def decoder_for(decode: Callable[[ConsumerRecord], Any], stage: str) -> Callable[[StreamMessage], Any]:
    """A batch decoder that never fails: valid records become events, the others wait on the message
    (`dead_letters(message)`) for the handler to send to the DLQ. One bad record cannot stop a batch."""

    async def decoder(message: StreamMessage) -> list:
        good, bad = decode_records(records_of(message), decode, stage)
        message.dead_letters = bad
        message.decoded = good
        return [event for _, event in good]

    return decoder


def dead_letters(message: StreamMessage) -> list[tuple[ConsumerRecord, str, BaseException]]:
    return getattr(message, "dead_letters", [])


def value_of(parse: Callable[[bytes], T]) -> Callable[[ConsumerRecord], T]:
    """Decode a record from its value alone (most topics carry one kind of event)."""
    return lambda record: parse(record.value or b"")


def decode_records(
    records: Sequence[ConsumerRecord], decode: Callable[[ConsumerRecord], T], stage: str
) -> tuple[list[tuple[ConsumerRecord, T]], list[tuple[ConsumerRecord, str, BaseException]]]:
    good: list[tuple[ConsumerRecord, T]] = []
    bad: list[tuple[ConsumerRecord, str, BaseException]] = []
    for record in records:
        try:
            good.append((record, decode(record)))
        except (ValidationError, ValueError) as error:
            bad.append((record, stage, error))
    return good, bad


def records_of(message: StreamMessage) -> Sequence[ConsumerRecord]:
    raw = message.raw_message
    return raw if isinstance(raw, tuple) else (raw,)
