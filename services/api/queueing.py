"""Handing a taken request to the pipeline: published on the requests topic, or a clear 503.

The job is recorded before its request is published (so it is known the moment it is answered). When
the broker does not take the request, a job recorded for this request alone is withdrawn: nothing
would ever run it, and until its deadline it would hold its place (an undo in progress refuses a
second one). The caller gets 503 `broker_unavailable` and sends the request again.
"""

import logging

from faststream.kafka.fastapi import KafkaRouter
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import jobs, topics
from shared.events import ImportRequest

from .errors import ApiError

__all__ = ["RETRY_AFTER_S", "publish_request"]

log = logging.getLogger("clients_import.api")

RETRY_AFTER_S = 5


async def publish_request(engine: AsyncEngine, router: KafkaRouter, job: ImportRequest, recorded_now: bool) -> None:
    """`recorded_now`: this request recorded the job (a repeat of a known one withdraws nothing)."""
    try:
        await router.broker.publish(job.model_dump_json().encode(), topics.REQUESTS, key=job.job_id.encode(),
                                    headers={"content-type": "application/json"})
    except Exception as error:  # any failure to hand it over: the broker away, slow, refusing
        log.warning("request not published", extra={"step": "job.unpublished", "job_id": job.job_id,
                                                     "reason": f"{type(error).__name__}: {error}"[:300]})
        if recorded_now:
            async with engine.begin() as conn:
                await jobs.withdraw(conn, job.job_id)
        raise ApiError(503, "broker_unavailable", "The request could not be queued: the message broker did not take "
                       "it, and nothing was started. Send it again in a moment.",
                       headers={"Retry-After": str(RETRY_AFTER_S)}) from error
