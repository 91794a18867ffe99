"""The validator: raw CSV chunks in, accepted and rejected rows out."""

import logging

from faststream.kafka import KafkaBroker, KafkaMessage

from shared import topics
from shared.events import Chunk, RowsAccepted, RowsRejected
from shared.kafka import consumer_options, dead_letters, decoder_for, publish_all, send_to_dlq, value_of
from shared.settings import Settings

from .routing import route
from .rules import RowRules, validate_chunk

log = logging.getLogger("clients_import.validator")


def register(broker: KafkaBroker, settings: Settings) -> None:
    rules = RowRules(client_types=settings.client_types)
    broker.publisher(topics.ROWS_ACCEPTED, schema=RowsAccepted, title="rows.accepted",
                     description="Valid rows of a chunk, normalised; every row of one email on one partition.")
    broker.publisher(topics.ROWS_REJECTED, schema=RowsRejected, title="rows.rejected",
                     description="Rows of a chunk that broke a rule, with every error and the original values.")

    @broker.subscriber(topics.CHUNKS, **consumer_options(settings, "validator"),
                       decoder=decoder_for(value_of(Chunk.model_validate_json), "validator"),
                       title="validator", description="Checks every row of a chunk against the import rules.")
    async def validate_chunks(chunks: list[Chunk], message: KafkaMessage) -> None:
        bad, publications = dead_letters(message), []
        for (record, _), chunk in zip(message.decoded, chunks, strict=True):
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
