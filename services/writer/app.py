"""The writer: accepted rows in, clients upserted by email, one result per row out."""

import logging
from collections import Counter

from faststream.kafka import KafkaBroker, KafkaMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import topics
from shared.events import RowResult, RowsAccepted, RowsWritten
from shared.kafka import Publication, consumer_options, dead_letters, decoder_for, publish_all, send_to_dlq, value_of
from shared.settings import Settings

from .plan import PendingRow
from .upsert import apply_rows

log = logging.getLogger("clients_import.writer")


def register(broker: KafkaBroker, settings: Settings, engine: AsyncEngine) -> None:
    broker.publisher(topics.ROWS_WRITTEN, schema=RowsWritten, title="rows.written",
                     description="What the writer did with each row of one accepted record: created, updated, "
                                 "unchanged or rejected, with the client id.")

    @broker.subscriber(topics.ROWS_ACCEPTED, **consumer_options(settings, "writer"),
                       decoder=decoder_for(value_of(RowsAccepted.model_validate_json), "writer"),
                       title="writer", description="Upserts clients by email, a batch per transaction.")
    async def write_rows(batches: list[RowsAccepted], message: KafkaMessage) -> None:
        await send_to_dlq(broker, dead_letters(message))
        # The database commit happens here; the offsets are committed only after this handler returns.
        results = await apply_rows(engine, [PendingRow(b.job_id, b.options, row) for b in batches for row in b.rows])
        await publish_all(broker, written_events(batches, results))
        for job_id, n in Counter(job_id for job_id, _ in results).items():
            log.info("rows written", extra={"step": "rows.written", "job_id": job_id, "rows": n})


def written_events(batches: list[RowsAccepted], results: list[tuple[str, RowResult]]) -> list[Publication]:
    """One answer per accepted record, holding the results of exactly its rows: a redelivered record
    gets the same answer, which the notifier recognises."""
    by_row = {(job_id, result.row): result for job_id, result in results}
    return [
        Publication(
            topics.ROWS_WRITTEN,
            RowsWritten(job_id=batch.job_id, results=tuple(by_row[(batch.job_id, row.row)] for row in batch.rows)),
            key=batch.job_id,
        )
        for batch in batches
        if batch.rows
    ]
