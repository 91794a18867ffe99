"""The validator: raw CSV chunks in, accepted and rejected rows out."""

import logging

from faststream import FastStream
from faststream.kafka import KafkaBroker, KafkaMessage

from shared import topics
from shared.events import Chunk
from shared.kafka import build_broker, consumer_options, decode_records, publish_all, records_of, send_to_dlq
from shared.settings import Settings

from .routing import route
from .rules import RowRules, validate_chunk

log = logging.getLogger("clients_import.validator")


def register(broker: KafkaBroker, settings: Settings) -> None:
    rules = RowRules(client_types=settings.client_types)

    @broker.subscriber(topics.CHUNKS, **consumer_options(settings, "validator"))
    async def validate_chunks(_: list, message: KafkaMessage) -> None:
        chunks, bad = decode_records(records_of(message), Chunk.model_validate_json, "validator")
        publications = []
        for record, chunk in chunks:
            try:
                accepted, rejected = validate_chunk(chunk, rules)
            except Exception as error:  # a chunk the rules cannot read must not stop the others
                bad.append((record, "validator", error))
                continue
            publications += route(chunk, accepted, rejected, settings.topic_partitions)
            log.info(
                "chunk validated",
                extra={"step": "chunk.validated", "job_id": chunk.job_id, "chunk": chunk.index,
                       "accepted": len(accepted), "rejected": len(rejected)},
            )
        await send_to_dlq(broker, bad)
        await publish_all(broker, publications)


def build_app(settings: Settings) -> FastStream:
    broker = build_broker(settings)
    register(broker, settings)
    return FastStream(broker)
