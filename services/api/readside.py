"""The read side: what the API and the command line read about jobs and clients. Plain queries, plain dicts."""

from pathlib import PurePath

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared import jobs
from shared.db import as_utc
from shared.events import Issue, JobCounts, JobStatus, Outcome, outcome_sentence
from shared.tables import clients, import_jobs, job_rows, row_outcomes

from . import reports


async def job_document(conn: AsyncConnection, job_id: str, first_errors: int) -> dict | None:
    job = (await conn.execute(select(import_jobs).where(import_jobs.c.id == job_id))).mappings().one_or_none()
    if job is None:
        return None
    errors = [e.model_dump() for e in await jobs.first_errors(conn, job_id, first_errors)]
    return _document(job, errors)


async def list_jobs(conn: AsyncConnection, limit: int, offset: int) -> tuple[list[dict], int]:
    total = await conn.scalar(select(func.count()).select_from(import_jobs))
    query = select(import_jobs).order_by(import_jobs.c.received_at.desc()).limit(limit).offset(offset)
    return [_document(job, []) for job in (await conn.execute(query)).mappings()], total


def _document(job, errors: list[dict]) -> dict:
    counts = {outcome.value: job[outcome.value] or 0 for outcome in Outcome}
    status = JobStatus(job["status"])
    reason = Issue(**job["reason"]) if job["reason"] else None
    tally = JobCounts(total=job["total"] or 0, **counts)
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
        "message": outcome_sentence(job["file_name"], status, tally, bool(job["dry_run"]), reason),
        "callback_outcome": job["callback_outcome"],
        "mapping": job["mapping"],
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
