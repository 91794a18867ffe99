"""The uploader: import requests in, the job and its raw CSV chunks out."""

import logging
from collections.abc import Awaitable, Callable

from faststream.kafka import KafkaBroker, KafkaMessage

from shared import topics
from shared.events import Chunk, ImportRequest, JobEvent, JobStatus
from shared.kafka import consumer_options, dead_letters, decoder_for, publish_all, send_to_dlq, value_of
from shared.settings import Settings

from .intake import job_id_for, plan_job, refuse_malformed, repeated
from .reading import Limits

log = logging.getLogger("clients_import.uploader")
JobLookup = Callable[[str], Awaitable[JobStatus | None]]


async def _unknown(_: str) -> JobStatus | None:
    return None


def register(broker: KafkaBroker, settings: Settings, job_status: JobLookup = _unknown) -> None:
    limits = Limits(max_records=settings.max_records, max_bytes=settings.max_bytes)
    options = consumer_options(settings, "uploader") | dict(max_records=8)
    broker.publisher(topics.JOBS, schema=JobEvent, title="jobs",
                     description="A job was accepted (with its total), rejected whole (with the reason), or repeated.")
    broker.publisher(topics.CHUNKS, schema=Chunk, title="chunks",
                     description="A job's file as CSV slices: the header, some rows, and where they start.")

    @broker.subscriber(topics.REQUESTS, **options, decoder=decoder_for(value_of(ImportRequest.model_validate_json), "uploader"),
                       title="uploader", description="Reads each requested file and cuts it into chunks.")
    async def take_requests(requests: list[ImportRequest], message: KafkaMessage) -> None:
        bad = dead_letters(message)
        await send_to_dlq(broker, bad)
        await publish_all(broker, [p for record, _, error in bad for p in refuse_malformed(record.value or b"", error, record)])
        for (record, _), request in zip(message.decoded, requests, strict=True):
            await _take(request, job_id_for(request, record))

    async def _take(request: ImportRequest, job_id: str) -> None:
        status = await job_status(job_id)
        if status is not None and status.is_final:
            await publish_all(broker, repeated(job_id))
            log.info("repeated request", extra={"step": "job.repeated", "job_id": job_id})
            return
        publications = plan_job(request, job_id, limits, settings.chunk_rows)
        await publish_all(broker, publications)
        log.info(
            "job received",
            extra={"step": "job.received", "job_id": job_id, "file_name": request.file_name,
                   "event": publications[0].event.event, "chunks": len(publications) - 1},
        )
