"""An import job, defined once: its lifecycle, how its id is made, and the queries every reader shares.

Who writes a job's status: the API inserts it as `received` (so its status URL answers at once);
from then on the notifier alone moves it, forward only, along `TRANSITIONS`.
"""

import hashlib
import hmac
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .db import insert_for
from .events import ImportOptions, ImportRequest, JobKind, JobStatus, RowError
from .tables import import_jobs, job_requests, job_rows

__all__ = ["content_digest", "bound_digest", "RUNNING", "FINAL", "TRANSITIONS", "can_move", "job_id_for", "idempotent_job_id", "origin_job_id",
           "sign", "signed", "record_received", "withdraw", "first_errors", "quote_errors"]

RUNNING = (JobStatus.RECEIVED, JobStatus.PROCESSING)
FINAL = tuple(s for s in JobStatus if s not in RUNNING)
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.RECEIVED: frozenset({JobStatus.PROCESSING, *FINAL}),
    JobStatus.PROCESSING: frozenset(FINAL),
    **{status: frozenset() for status in FINAL},
}


def can_move(current: JobStatus, new: JobStatus) -> bool:
    return new == current or new in TRANSITIONS[current]


_NAMESPACE = uuid.UUID("5b0f8a52-1f0e-4a59-9d57-3c1f3f0f6d11")


def idempotent_job_id(scope: str, requested_by: str, key: str) -> str:
    """The same idempotency key from the same requester, through the same door, is the same job.
    `scope` keeps the doors apart: a request on the topic cannot name a job taken by the API."""
    return str(uuid.uuid5(_NAMESPACE, f"key\x00{scope}\x00{requested_by}\x00{key}"))


def origin_job_id(origin: str) -> str:
    """Stable under redelivery: the same Kafka record (topic/partition/offset) is the same job."""
    return str(uuid.uuid5(_NAMESPACE, f"record\x00{origin}"))


def sign(secret: str, job_id: str) -> str:
    """Our API and CLI name their jobs' ids themselves; the signature proves it was them."""
    return hmac.new(secret.encode(), f"job\x00{job_id}".encode(), hashlib.sha256).hexdigest()


def signed(request: ImportRequest, secret: str | None) -> bool:
    return bool(request.job_id and request.job_signature and secret) and hmac.compare_digest(
        request.job_signature, sign(secret, request.job_id)
    )


def job_id_for(request: ImportRequest, origin: str, secret: str | None) -> str | None:
    """The job a request starts, or None when it names a job id it may not name (not signed by us)."""
    if request.job_id:
        return request.job_id if signed(request, secret) else None
    if request.idempotency_key:
        return idempotent_job_id("topic", request.requested_by, request.idempotency_key)
    return origin_job_id(origin)


async def record_received(conn: AsyncConnection, job_id: str, request: ImportRequest) -> None:
    """The API's one write: the job exists from the moment the upload is taken."""
    options: ImportOptions = request.options
    insert = insert_for(conn.dialect.name, import_jobs)
    await conn.execute(
        insert.values(
            id=job_id, file_name=request.file_name, source=request.source.value, requested_by=request.requested_by,
            mode=options.mode.value, dry_run=options.dry_run, callback_url=options.callback_url,
            idempotency_key=request.idempotency_key, status=JobStatus.RECEIVED.value, received_at=datetime.now(UTC),
            retry_of=request.retry_of,
            kind=(JobKind.UNDO if request.undo_of else JobKind.IMPORT).value, undo_of=request.undo_of,
            content_sha256=content_digest(request),
        ).on_conflict_do_nothing(index_elements=[import_jobs.c.id])
    )


async def withdraw(conn: AsyncConnection, job_id: str) -> None:
    """Forget a job the API recorded whose request never reached the topic (still `received`: nothing ran)."""
    await conn.execute(delete(import_jobs).where(import_jobs.c.id == job_id,
                                                 import_jobs.c.status == JobStatus.RECEIVED.value))


async def first_errors(conn: AsyncConnection, job_id: str, limit: int) -> tuple[RowError, ...]:
    """The first `limit` errors of a job's rejected rows, in row order: what a notification quotes."""
    if limit <= 0:
        return ()
    query = (
        select(job_rows.c.row, job_rows.c.line, job_rows.c.errors)
        .where(job_rows.c.job_id == job_id)
        .order_by(job_rows.c.row)
        .limit(limit)
    )
    return quote_errors([(r.row, r.line, r.errors or []) for r in await conn.execute(query)], limit)


def quote_errors(rejected_rows: Iterable[tuple[int, int, list[dict]]], limit: int) -> tuple[RowError, ...]:
    """The first `limit` errors of (row, line, issues) in row order, for a notification a person reads."""
    errors = [
        RowError(row=row, line=line, field=issue.get("field"), code=issue["code"], message=issue["message"])
        for row, line, issues in sorted(rejected_rows, key=lambda r: r[0])
        for issue in issues
    ]
    return tuple(errors[: max(limit, 0)])


def content_digest(request: ImportRequest) -> str:
    """What a job id is bound to: the file and how to import it (not who sent it or under which id)."""
    # A retry's or an undo's target is part of what it asks (left out when there is none: digests taken before stay).
    fields = {"file_name", "content", "content_base64", "options",
              *(name for name in ("retry_of", "undo_of") if getattr(request, name))}
    body = request.model_dump_json(include=fields)
    return hashlib.sha256(body.encode()).hexdigest()


async def bound_digest(conn: AsyncConnection, job_id: str) -> str | None:
    """The content a job id is bound to: what the uploader first took it for, else what the API recorded
    when it took the upload (None for a job recorded before either was kept)."""
    taken = await conn.scalar(select(job_requests.c.content_sha256).where(job_requests.c.job_id == job_id))
    return taken or await conn.scalar(select(import_jobs.c.content_sha256).where(import_jobs.c.id == job_id))
