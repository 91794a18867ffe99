"""The writer: accepted rows in, clients upserted by email, one result per row out."""

import logging
from collections import defaultdict

from faststream import FastStream
from faststream.kafka import KafkaBroker, KafkaMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import topics
from shared.events import RowResult, RowsAccepted, RowsWritten
from shared.kafka import (
    Publication,
    build_broker,
    consumer_options,
    decode_records,
    publish_all,
    records_of,
    send_to_dlq,
)
from shared.settings import Settings

from .plan import PendingRow
from .upsert import apply_rows

log = logging.getLogger("clients_import.writer")


def register(broker: KafkaBroker, settings: Settings, engine: AsyncEngine) -> None:
    @broker.subscriber(topics.ROWS_ACCEPTED, **consumer_options(settings, "writer"))
    async def write_rows(_: list, message: KafkaMessage) -> None:
        batches, bad = decode_records(records_of(message), RowsAccepted.model_validate_json, "writer")
        await send_to_dlq(broker, bad)
        pending = [PendingRow(b.job_id, b.options, row) for _, b in batches for row in b.rows]
        # The database commit happens here; the offsets are committed only after this handler returns.
        results = await apply_rows(engine, pending)
        await publish_all(broker, written_events(results))
        for job_id, n in _per_job(results).items():
            log.info("rows written", extra={"step": "rows.written", "job_id": job_id, "rows": n})


def written_events(results: list[tuple[str, RowResult]]) -> list[Publication]:
    by_job: dict[str, list[RowResult]] = defaultdict(list)
    for job_id, result in results:
        by_job[job_id].append(result)
    return [
        Publication(topics.ROWS_WRITTEN, RowsWritten(job_id=job_id, results=tuple(rows)), key=job_id)
        for job_id, rows in by_job.items()
    ]


def _per_job(results: list[tuple[str, RowResult]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for job_id, _ in results:
        counts[job_id] += 1
    return counts


def build_app(settings: Settings, engine: AsyncEngine) -> FastStream:
    broker = build_broker(settings)
    register(broker, settings, engine)
    return FastStream(broker)
