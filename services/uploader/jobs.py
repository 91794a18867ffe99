"""What the API and the command line read about jobs and clients: plain queries, plain dicts."""

from datetime import UTC, datetime
from pathlib import PurePath

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import as_utc, insert_for
from shared.events import ImportOptions, JobStatus, Outcome, Source
from shared.tables import clients, import_jobs, job_rows, row_outcomes

from . import reports

FIRST_ERRORS = 20


async def record_received(
    conn: AsyncConnection, job_id: str, file_name: str, source: Source, requested_by: str,
    options: ImportOptions, idempotency_key: str | None,
) -> None:
    """The job exists from the moment the upload is taken: a status URL answers at once."""
    insert = insert_for(conn.dialect.name, import_jobs)
    await conn.execute(
        insert.values(
            id=job_id, file_name=file_name, source=source.value, requested_by=requested_by,
            mode=options.mode.value, dry_run=options.dry_run, callback_url=options.callback_url,
            idempotency_key=idempotency_key, status=JobStatus.RECEIVED.value, received_at=datetime.now(UTC),
        ).on_conflict_do_nothing(index_elements=[import_jobs.c.id])
    )


async def job_document(conn: AsyncConnection, job_id: str) -> dict | None:
    job = (await conn.execute(select(import_jobs).where(import_jobs.c.id == job_id))).mappings().one_or_none()
    if job is None:
        return None
    query = (
        select(job_rows.c.row, job_rows.c.line, job_rows.c.errors)
        .where(job_rows.c.job_id == job_id)
        .order_by(job_rows.c.row)
        .limit(FIRST_ERRORS)
    )
    errors = [
        {"row": r.row, "line": r.line, "field": e.get("field"), "code": e["code"], "message": e["message"]}
        for r in await conn.execute(query)
        for e in r.errors or ()
    ][:FIRST_ERRORS]
    return _document(job, errors)


async def list_jobs(conn: AsyncConnection, limit: int, offset: int) -> tuple[list[dict], int]:
    total = await conn.scalar(select(func.count()).select_from(import_jobs))
    query = select(import_jobs).order_by(import_jobs.c.received_at.desc()).limit(limit).offset(offset)
    return [_document(job, []) for job in (await conn.execute(query)).mappings()], total


def _document(job, errors: list[dict]) -> dict:
    counts = {name: job[name] or 0 for name in ("created", "updated", "unchanged", "rejected")}
    return {
        "job_id": job["id"],
        "file_name": job["file_name"],
        "status": job["status"],
        "source": job["source"],
        "requested_by": job["requested_by"],
        "mode": job["mode"],
        "dry_run": job["dry_run"],
        "total": job["total"] or 0,
        "processed": sum(counts.values()),
        **counts,
        "warnings": job["warnings"] or [],
        "reason": job["reason"],
        "errors": errors,
        "callback_outcome": job["callback_outcome"],
        "received_at": as_utc(job["received_at"]),
        "finished_at": as_utc(job["finished_at"]),
        "links": {
            "self": f"/imports/{job['id']}",
            "errors_csv": f"/imports/{job['id']}/errors.csv",
            "results_csv": f"/imports/{job['id']}/results.csv",
        },
    }


async def rejected_rows(conn: AsyncConnection, job_id: str) -> list[dict]:
    """Rows the validator refused and rows the writer refused, in file order."""
    counted = select(job_rows.c.row, job_rows.c.line, job_rows.c.errors, job_rows.c.original).where(
        job_rows.c.job_id == job_id
    )
    return [dict(r) for r in (await conn.execute(counted.order_by(job_rows.c.row))).mappings()]


async def accepted_rows(conn: AsyncConnection, job_id: str) -> list[dict]:
    query = (
        select(row_outcomes.c.row, row_outcomes.c.line, row_outcomes.c.email, row_outcomes.c.username,
               row_outcomes.c.client_id, row_outcomes.c.outcome)
        .where(row_outcomes.c.job_id == job_id, row_outcomes.c.outcome != Outcome.REJECTED.value)
        .order_by(row_outcomes.c.row)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


REPORTS = {"errors": (rejected_rows, reports.errors_csv), "results": (accepted_rows, reports.results_csv)}


async def report(conn: AsyncConnection, job_id: str, kind: str) -> tuple[str, str] | None:
    """A job's report as (file name, CSV text): `errors` or `results`; None for an unknown job."""
    file_name = await conn.scalar(select(import_jobs.c.file_name).where(import_jobs.c.id == job_id))
    if file_name is None:
        return None
    rows_of, render = REPORTS[kind]
    return f"{PurePath(file_name).stem}-{kind}.csv", render(await rows_of(conn, job_id))


async def search_clients(conn: AsyncConnection, q: str, limit: int, offset: int) -> tuple[list[dict], int]:
    where = []
    if q.strip():
        pattern = f"%{q.strip().lower()}%"
        where.append(or_(
            func.lower(clients.c.first_name).like(pattern),
            func.lower(clients.c.last_name).like(pattern),
            clients.c.email.like(pattern),
            clients.c.username.like(pattern),
        ))
    total = await conn.scalar(select(func.count()).select_from(clients).where(*where))
    query = select(clients).where(*where).order_by(clients.c.updated_at.desc(), clients.c.email).limit(limit).offset(offset)
    found = [dict(r) | {"created_at": as_utc(r["created_at"]), "updated_at": as_utc(r["updated_at"])}
             for r in (await conn.execute(query)).mappings()]
    return found, total
