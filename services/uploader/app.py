"""The uploader: import requests in, the job and its raw CSV chunks out."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from aiokafka import ConsumerRecord
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import jobs, mappings, retries, topics, undo
from shared.callbacks import CallbackPolicy, CallbackRefused, check_url
from shared.db import insert_for, reading
from shared.events import Chunk, ImportRequest, Issue, JobEvent, JobStatus, RowsAccepted
from shared.kafka import Publication
from shared.reading import Limits
from shared.settings import Settings
from shared.stage import Output, Stage
from shared.tables import import_jobs, job_requests

from .intake import (
    plan_job,
    plan_undo_job,
    refuse_callback,
    refuse_malformed,
    refuse_reused,
    refuse_unsigned,
    repeated,
)
from .retrying import plan_retry

__all__ = ["FirstRequest", "STAGE", "Request", "UploaderPorts", "take_requests"]

log = logging.getLogger("clients_import.uploader")


@dataclass(frozen=True)
class Request:
    """A request as consumed: the event, and where it came from (its job id when it names none)."""

    event: ImportRequest
    origin: str


def decode_request(record: ConsumerRecord) -> Request:
    return Request(ImportRequest.model_validate_json(record.value or b""), origin_of(record))


def origin_of(record: ConsumerRecord) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


class FirstRequest(NamedTuple):
    """The request a job id was first taken for: its content's digest and where it came from."""

    digest: str
    origin: str | None


@dataclass(frozen=True)
class UploaderPorts:
    limits: Limits
    chunk_rows: int
    chunk_max_bytes: int
    signing_key: str | None
    job_status: Callable[[str], Awaitable[JobStatus | None]]
    # Binds a job id to a request's content and origin the first time; answers the first request's.
    take: Callable[[str, str, str], Awaitable["FirstRequest"]]
    callbacks: CallbackPolicy = CallbackPolicy()
    # The saved mapping a job is planned with, by name and job (None when there is none): the newest
    # version the first time, and the same version for the job ever after.
    mapping: Callable[[str, str], Awaitable[dict | None]] | None = None
    # What a retry (by job id, of an import, from a requester, trusted or not) may fix: bound when first taken.
    retry_basis: Callable[[str, str, str, bool], Awaitable[retries.Basis]] | None = None
    # An undo (of an import, by job id, from a requester, trusted or not): the import it takes back, claimed
    # for this undo job unless it may not be (shared/undo.py).
    undo_target: Callable[[str, str, str, bool], Awaitable["UndoTarget"]] | None = None
    partitions: int = 1  # of clients.import.rows.accepted: an undo sends each writer its share

    @classmethod
    def open(cls, settings: Settings, engine: AsyncEngine, _publish: object = None) -> "UploaderPorts":
        async def job_status(job_id: str) -> JobStatus | None:
            async with reading(engine).connect() as conn:
                status = await conn.scalar(select(import_jobs.c.status).where(import_jobs.c.id == job_id))
            return JobStatus(status) if status else None

        async def take(job_id: str, digest: str, origin: str) -> FirstRequest:
            async with engine.begin() as conn:
                insert = insert_for(conn.dialect.name, job_requests)
                await conn.execute(insert.values(job_id=job_id, content_sha256=digest, origin=origin,
                                                 taken_at=datetime.now(UTC))
                                   .on_conflict_do_nothing(index_elements=[job_requests.c.job_id]))
                first = select(job_requests.c.content_sha256, job_requests.c.origin).where(job_requests.c.job_id == job_id)
                return FirstRequest(*(await conn.execute(first)).one())

        async def mapping(name: str, job_id: str) -> dict | None:
            async with engine.begin() as conn:
                bound = await conn.scalar(select(job_requests.c.mapping_version).where(job_requests.c.job_id == job_id))
                if bound is not None:
                    return await mappings.version_of(conn, name, bound)
                saved = await mappings.newest(conn, name)
                if saved is not None:
                    await conn.execute(update(job_requests).where(job_requests.c.job_id == job_id)
                                       .values(mapping_version=saved["version"]))
                return saved

        async def retry_basis(job_id: str, retry_of: str, requested_by: str, trusted: bool) -> retries.Basis:
            async with engine.begin() as conn:
                return await retries.bind(conn, job_id, retry_of, requested_by, trusted)

        async def undo_target(undo_of: str, job_id: str, requested_by: str, trusted: bool) -> UndoTarget:
            def refusal(state: undo.UndoState) -> Issue | None:
                return undo.refusal(state, job_id, datetime.now(UTC), settings.undo_retention_days, requested_by,
                                    trusted)

            async with engine.begin() as conn:
                state = await undo.undo_state(conn, undo_of)
                refused = refusal(state)
                if refused is None and await undo.claim(conn, undo_of, job_id) != job_id:
                    state = await undo.undo_state(conn, undo_of)  # another undo took it a moment before
                    refused = refusal(state)
            file_name = state.job["file_name"] if state.job is not None else ""
            return UndoTarget(refused, file_name, state.recorded)

        return cls(Limits.of(settings), settings.chunk_rows, settings.chunk_max_bytes, settings.signing_key, job_status,
                   take, CallbackPolicy.of(settings), mapping, retry_basis, undo_target, settings.topic_partitions)


class UndoTarget(NamedTuple):
    """The import an undo request names: why it may not be undone (None: it is claimed for this undo), its
    file's name, and how many of its rows the undo takes back."""

    refusal: Issue | None
    file_name: str
    rows: int


async def take_requests(requests: list[Request], ports: UploaderPorts) -> list[Publication]:
    publications: list[Publication] = []
    for request in requests:
        publications += await take_request(request, ports)
    return publications


async def take_request(request: Request, ports: UploaderPorts) -> list[Publication]:
    job_id = jobs.job_id_for(request.event, request.origin, ports.signing_key)
    if job_id is None:
        return refuse_unsigned(request.event, jobs.origin_job_id(request.origin))
    if (refusal := callback_refusal(request.event, ports.callbacks)) is not None:
        # Under the id our own API or CLI signed (its caller waits on it); else under one of its own, so a
        # corrected request with the same idempotency key is a new job, not a repeat of this refusal.
        named = job_id if request.event.job_id is not None else jobs.origin_job_id(request.origin)
        return refuse_callback(request.event, named, refusal)
    digest = jobs.content_digest(request.event)  # the whole file hashed once
    first = await ports.take(job_id, digest, request.origin)
    if first.digest != digest:
        log.info("job id reused", extra={"step": "job.reused", "job_id": job_id})
        return refuse_reused(request.event, jobs.origin_job_id(request.origin))
    status = await ports.job_status(job_id)
    if status is not None and status.is_final:
        if first.origin == request.origin:  # the job's own request, delivered again after it ended
            log.info("request delivered again", extra={"step": "job.redelivered", "job_id": job_id})
            return []
        log.info("repeated request", extra={"step": "job.repeated", "job_id": job_id})
        return repeated(job_id, request.origin)
    if request.event.retry_of is not None and ports.retry_basis is not None:
        return await take_retry(request.event, job_id, ports)
    if request.event.undo_of is not None:
        # A signed job id says our API or CLI sent it (job_id_for let only a signed one through).
        target = await ports.undo_target(request.event.undo_of, job_id, request.event.requested_by,
                                         request.event.job_id is not None)
        log.info("undo received", extra={"step": "job.received", "job_id": job_id, "undo_of": request.event.undo_of,
                                         "refused": target.refusal.code if target.refusal else None})
        return plan_undo_job(request.event, job_id, target.refusal, target.file_name, target.rows, ports.partitions)
    name = request.event.options.mapping
    saved = await ports.mapping(name, job_id) if name is not None and ports.mapping is not None else None
    # Reading a 10 MB file takes CPU time: off the event loop, so heartbeats and other work go on.
    publications = await asyncio.to_thread(
        plan_job, request.event, job_id, ports.limits, ports.chunk_rows, ports.chunk_max_bytes, saved
    )
    log.info("job received", extra={"step": "job.received", "job_id": job_id, "file_name": request.event.file_name,
                                    "event": publications[0].event.event, "chunks": len(publications) - 1})
    return publications


async def take_retry(request: ImportRequest, job_id: str, ports: UploaderPorts) -> list[Publication]:
    """A retry: corrected rows of an earlier import (shared/retries.py). A signed job id says our API or CLI sent it."""
    basis = await ports.retry_basis(job_id, request.retry_of, request.requested_by, request.job_id is not None)
    publications = await asyncio.to_thread(plan_retry, request, job_id, basis, ports.limits, ports.chunk_rows,
                                           ports.chunk_max_bytes)
    log.info("retry received", extra={"step": "job.received", "job_id": job_id, "retry_of": request.retry_of,
                                      "event": publications[0].event.event, "chunks": len(publications) - 1})
    return publications


def callback_refusal(request: ImportRequest, policy: CallbackPolicy) -> str | None:
    """Why this deployment will not call the request's callback URL back, or None (no URL, or a fine one)."""
    if request.options.callback_url is None:
        return None
    try:
        check_url(request.options.callback_url, policy)
    except CallbackRefused as refused:
        return str(refused)
    return None


def refuse(record: ConsumerRecord, error: BaseException) -> list[Publication]:
    return refuse_malformed(record.value or b"", error, origin_of(record))


STAGE = Stage(
    name="uploader",
    description="Reads each requested file and cuts it into chunks.",
    consumes=(topics.REQUESTS,),
    publishes=(
        Output(topics.JOBS, JobEvent, "jobs",
               "A job was accepted (with its total), rejected whole (with the reason), or repeated."),
        Output(topics.CHUNKS, Chunk, "chunks", "A job's file as CSV slices: the header, some rows, and where they start."),
        Output(topics.ROWS_ACCEPTED, RowsAccepted, "rows.accepted (undo)",
               "An undo's share for each partition: no rows, `undo_of`, `partition` and `partitions`."),
    ),
    decode=decode_request,
    handle=take_requests,
    ports=UploaderPorts.open,
    refuse=refuse,
    max_records=8,
)
