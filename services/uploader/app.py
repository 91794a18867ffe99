"""The uploader: import requests in, the job and its raw CSV chunks out."""

import logging
from collections.abc import Awaitable, Callable

from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker, KafkaMessage

from shared import topics
from shared.events import ImportRequest, JobStatus
from shared.kafka import build_broker, consumer_options, publish_all, records_of, send_to_dlq
from shared.settings import Settings

from .intake import job_id_for, plan_job, refuse_malformed, repeated
from .reading import Limits

log = logging.getLogger("clients_import.uploader")
JobLookup = Callable[[str], Awaitable[JobStatus | None]]


async def _unknown(_: str) -> JobStatus | None:
    return None


def register(broker: KafkaBroker, settings: Settings, job_status: JobLookup = _unknown) -> None:
    limits = Limits(max_records=settings.max_records, max_bytes=settings.max_bytes)
    options = consumer_options(settings, "uploader") | dict(max_records=8, ack_policy=AckPolicy.NACK_ON_ERROR)

    @broker.subscriber(topics.REQUESTS, **options)
    async def take_requests(_: list, message: KafkaMessage) -> None:
        for record in records_of(message):
            try:
                request = ImportRequest.model_validate_json(record.value or b"")
            except ValueError as error:
                await send_to_dlq(broker, [(record, "uploader", error)])
                await publish_all(broker, refuse_malformed(record.value or b"", error))
                continue
            job_id = job_id_for(request, record)
            status = await job_status(job_id)
            if status is not None and status.is_final:
                await publish_all(broker, repeated(job_id))
                log.info("repeated request", extra={"step": "job.repeated", "job_id": job_id})
                continue
            publications = plan_job(request, job_id, limits, settings.chunk_rows)
            await publish_all(broker, publications)
            log.info(
                "job received",
                extra={"step": "job.received", "job_id": job_id, "file_name": request.file_name,
                       "event": publications[0].event.event, "chunks": len(publications) - 1},
            )


def build_app(settings: Settings, job_status: JobLookup = _unknown) -> FastStream:
    broker = build_broker(settings)
    register(broker, settings, job_status)
    return FastStream(broker)
