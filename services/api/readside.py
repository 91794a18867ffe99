"""The read side: what the API and the command line read about jobs and clients. Plain queries, plain dicts."""

import asyncio
from pathlib import PurePath

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared import jobs, retries, search
from shared.db import as_utc
from shared.events import Issue, JobCounts, JobKind, JobStatus, Outcome, outcome_sentence
from shared.tables import clients, import_jobs, job_rows, row_outcomes, undo_claims, undo_conflicts

from . import reports


async def job_document(conn: AsyncConnection, job_id: str, first_errors: int) -> dict | None:
    job = (await conn.execute(_jobs().where(import_jobs.c.id == job_id))).mappings().one_or_none()
    if job is None:
        return None
    errors = [_issue(e.model_dump()) for e in await jobs.first_errors(conn, job_id, first_errors)]
    return {**_document(job, errors), **await retry_facts(conn, job)}


async def retry_facts(conn: AsyncConnection, job) -> dict:
    """An import's retries (newest first, at most RETRIES_SHOWN) and its rows still rejected after them."""
    listed, count = await retries.retries_of(conn, job["id"])
    fixed = await retries.fixed_rows(conn, job["id"]) if count else frozenset()
    still = job["rejected"] or 0
    if fixed:
        query = select(func.count()).select_from(job_rows).where(job_rows.c.job_id == job["id"],
                                                                 job_rows.c.row.in_(sorted(fixed)))
        still -= await conn.scalar(query) or 0
    return {
        "retries": [{**r, "received_at": as_utc(r["received_at"]), "finished_at": as_utc(r["finished_at"]),
                     "status_url": f"/imports/{r['job_id']}"} for r in listed],
        "retries_more": max(count - len(listed), 0),
        "still_rejected": max(still, 0),
    }


async def list_jobs(conn: AsyncConnection, limit: int, offset: int) -> tuple[list[dict], int]:
    total = await conn.scalar(select(func.count()).select_from(import_jobs))
    query = _jobs().order_by(import_jobs.c.received_at.desc()).limit(limit).offset(offset)
    return [_document(job, [], LIST_WARNINGS) for job in (await conn.execute(query)).mappings()], total


def _jobs():
    """Jobs with the undo that claimed each (shared/undo.py): it holds the import while it runs, and after
    it failed, so the page offers no undo that would be refused."""
    return (select(import_jobs, undo_claims.c.job_id.label("undo_claimed_by"))
            .select_from(import_jobs.outerjoin(undo_claims, undo_claims.c.undo_of == import_jobs.c.id)))


# What a job document carries, whatever was stored (a file's header is the uploader's to describe, and
# older versions stored every unknown column name): a list is a summary, one job may say a little more.
LIST_WARNINGS = 3  # warnings per job in GET /imports; `warnings_more` counts the rest
JOB_WARNINGS = 20  # warnings in GET /imports/{id}
MESSAGE_CHARS = 1000  # characters of one warning's or reason's message


def _document(job, errors: list[dict], shown_warnings: int = JOB_WARNINGS) -> dict:
    counts = {outcome.count: job[outcome.count] or 0 for outcome in Outcome}
    kind = JobKind(job["kind"] or JobKind.IMPORT)
    status = JobStatus(job["status"])
    reason = Issue(**job["reason"]) if job["reason"] else None
    tally = JobCounts(total=job["total"] or 0, **counts)
    warnings = job["warnings"] or []
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
        "warnings": [_issue(w) for w in warnings[:shown_warnings]],
        "warnings_more": max(len(warnings) - shown_warnings, 0),
        "reason": _issue(job["reason"]) if job["reason"] else None,
        "errors": errors,
        "message": _cut(outcome_sentence(job["file_name"], status, tally, bool(job["dry_run"]), reason, kind)),
        "callback_outcome": job["callback_outcome"],
        "mapping": job["mapping"],
        "retry_of": job["retry_of"],
        "received_at": as_utc(job["received_at"]),
        "finished_at": as_utc(job["finished_at"]),
        "kind": kind.value,
        "undo_of": job["undo_of"],  # an undo: the import it takes back
        "undone_by": job["undone_by"],  # an import: the undo that took it back, and when it ended
        "undone_at": as_utc(job["undone_at"]),
        "undo_claimed_by": job.get("undo_claimed_by"),  # an import: the undo that holds it (running, ended or failed)
        "links": {
            "self": f"/imports/{job['id']}",
            "errors_csv": f"/imports/{job['id']}/errors.csv",
            "results_csv": f"/imports/{job['id']}/results.csv",
            **({"conflicts_csv": f"/imports/{job['id']}/conflicts.csv"} if kind is JobKind.UNDO else
               {"undo": f"/imports/{job['id']}/undo"} if _may_be_undone(job) else {}),
        },
    }


def _may_be_undone(job) -> bool:
    """No undo link on an import an undo holds or took back, nor on a dry run: following it could only
    be refused. (The undo itself decides the rest: shared/undo.py's `refusal`.)"""
    return not (job["dry_run"] or job["undone_by"] or job.get("undo_claimed_by"))


def _issue(stored: dict) -> dict:
    return {**stored, "message": _cut(str(stored.get("message", "")))}


def _cut(message: str) -> str:
    return message if len(message) <= MESSAGE_CHARS else message[: MESSAGE_CHARS - 1] + "…"


async def rejected_rows(conn: AsyncConnection, job_id: str) -> list[dict]:
    """Rows the validator refused and rows the writer refused, in file order, but those a retry imported since;
    a row a retry tried and left rejected, with that retry's values and errors."""
    counted = select(job_rows.c.row, job_rows.c.line, job_rows.c.errors, job_rows.c.original).where(
        job_rows.c.job_id == job_id
    )
    fixed = await retries.fixed_rows(conn, job_id)
    tried = await retries.last_tried(conn, job_id, None)  # a row a retry left rejected: as last tried
    rows = (await conn.execute(counted.order_by(job_rows.c.row))).mappings()
    return [_as_tried(dict(r), tried.get(r["row"])) for r in rows if r["row"] not in fixed]


def _as_tried(row: dict, tried: tuple | None) -> dict:
    if tried is None:
        return row
    values, errors, _ = tried
    return {**row, "original": values, "errors": list(errors)}


async def accepted_rows(conn: AsyncConnection, job_id: str) -> list[dict]:
    query = (
        select(row_outcomes.c.row, row_outcomes.c.line, row_outcomes.c.email, row_outcomes.c.username,
               row_outcomes.c.client_id, row_outcomes.c.outcome)
        .where(row_outcomes.c.job_id == job_id, row_outcomes.c.outcome != Outcome.REJECTED.value)
        .order_by(row_outcomes.c.row)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def conflict_rows(conn: AsyncConnection, job_id: str) -> list[dict]:
    """An undo's conflicts, in the undone import's row order."""
    query = select(undo_conflicts).where(undo_conflicts.c.job_id == job_id).order_by(undo_conflicts.c.row,
                                                                                     undo_conflicts.c.field)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


REPORTS = {"errors": (rejected_rows, reports.errors_csv), "results": (accepted_rows, reports.results_csv),
           "conflicts": (conflict_rows, reports.conflicts_csv)}


async def report(conn: AsyncConnection, job_id: str, kind: str) -> tuple[str, str] | None:
    """A job's report as (file name, CSV text): `errors` or `results`; None for an unknown job."""
    file_name = await conn.scalar(select(import_jobs.c.file_name).where(import_jobs.c.id == job_id))
    if file_name is None:
        return None
    rows_of, render = REPORTS[kind]
    # Off the event loop: a report of 5000 wide rows takes a second or two to write, and every other
    # request would wait that long.
    return f"{PurePath(file_name).stem}-{kind}.csv", await asyncio.to_thread(render, await rows_of(conn, job_id))


# Paging through clients, bounded (the API answers 422 beyond).
MAX_Q_CHARS = 200  # characters of a search text
MAX_OFFSET = 1_000_000  # rows skipped; a deeper page of a list has no reader


async def search_clients(conn: AsyncConnection, q: str, limit: int, offset: int) -> tuple[list[dict], int, bool]:
    """One page of clients, most recently changed first, the number of clients the page is part
    of, and whether that number is exact. A search (see `shared.search`) finds at most
    `search.MAX_MATCHES`; without one, every client is counted."""
    text = q.strip()
    page = select(clients).order_by(clients.c.updated_at.desc(), clients.c.email).limit(limit).offset(offset)
    if not text:
        total = await conn.scalar(select(func.count()).select_from(clients))
        return [_client(row) for row in (await conn.execute(page)).mappings()], total, True
    # One search per request: the matches (one more than are kept, to know whether there are more) are
    # found once, counted, and the page is cut from them.
    dialect = conn.dialect.name
    matches = search.matching_keys(dialect, text, search.MAX_MATCHES + 1).cte("matches")
    key = matches.c[0]
    counted = select(func.count()).select_from(matches).scalar_subquery().label("matches")
    page = page.add_columns(counted).where(search.key_column(dialect).in_(select(key).limit(search.MAX_MATCHES)))
    rows = (await conn.execute(page)).mappings().all()
    found = rows[0]["matches"] if rows else await conn.scalar(select(func.count()).select_from(matches))
    return [_client(row) for row in rows], min(found, search.MAX_MATCHES), found <= search.MAX_MATCHES


_CLIENT_FIELDS = tuple(f"{column.name}" for column in clients.c)  # plain str keys: a serializer's fast path


def _client(row) -> dict:
    found = {name: row[name] for name in _CLIENT_FIELDS}
    return found | {"created_at": as_utc(found["created_at"]), "updated_at": as_utc(found["updated_at"])}
