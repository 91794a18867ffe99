"""The notifier's records: jobs and every counted row, each (job, row) counted once."""

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shared import jobs
from shared.db import as_utc, execute_many, insert_for
from shared.events import (
    ImportNotification,
    Issue,
    JobAccepted,
    JobCounts,
    JobOverdue,
    JobRefused,
    JobRepeated,
    JobStatus,
    Outcome,
    RowResult,
    RowsRejected,
    RowsWritten,
)
from shared.tables import import_jobs, job_parts, job_repeats, job_rows
from shared.tables import notices_under_way as notices

from . import aggregate

_SLICE = 500
_RUNNING = [status.value for status in jobs.RUNNING]


@dataclass(frozen=True)
class JobState:
    job_id: str
    status: JobStatus
    counts: JobCounts
    notify: bool
    # The job reached its final status in this very settle (not a final job announced again).
    ended: bool = field(default=False, compare=False)
    # Its notification is owed again because the request was repeated (see Notifier.record).
    repeat: bool = field(default=False, compare=False)


_UPLOADER_WORD = ("status", "total", "warnings", "reason", "finished_at", "mapping", "retry_of", "kind", "undo_of")
_COUNTS = tuple(outcome.count for outcome in Outcome)  # the job's columns


def _awaiting_uploader():
    """The job row has not had the uploader's word (job.accepted or job.rejected) yet.

    The API records the job as received first, and rows of the job may have been counted
    (moving it to processing) before its job.accepted arrives, from another topic. Only the
    uploader's word sets the total, so a job without one is waiting for it in either status;
    a redelivered word finds the total set and changes nothing, and a final job (failed at its
    deadline, say) is never reopened.
    """
    return import_jobs.c.total.is_(None) & import_jobs.c.status.in_(_RUNNING)


async def record_jobs(
    conn: AsyncConnection, events: Iterable[JobAccepted | JobRefused | JobRepeated | JobOverdue], now: datetime | None = None
) -> set[str]:
    touched: set[str] = set()
    insert = insert_for(conn.dialect.name, import_jobs)
    for event in events:
        touched.add(event.job_id)
        if isinstance(event, JobOverdue):
            # A sweeper's word: fail the job if it still runs; a job that ended meanwhile stays as it ended.
            await fail(conn, [event.job_id], event.reason, now or datetime.now(UTC))
            continue
        if isinstance(event, JobRepeated):
            # The same idempotency key again: the requester gets the job's notification once more, once
            # per repeating request. (A notice under way stays: the notification it notes answers this
            # request too.)
            if await _first_word_of_request(conn, event, now or datetime.now(UTC)):
                await conn.execute(
                    update(import_jobs).where(import_jobs.c.id == event.job_id).values(notified_at=None)
                )
            continue
        refused = isinstance(event, JobRefused)
        values = dict(
            id=event.job_id,
            file_name=event.file_name,
            source=event.source.value,
            requested_by=event.requested_by,
            mode=event.options.mode.value,
            dry_run=event.options.dry_run,
            callback_url=event.options.callback_url,
            idempotency_key=event.idempotency_key,
            status=JobStatus.REJECTED.value if refused else JobStatus.PROCESSING.value,
            total=0 if refused else event.total,
            warnings=[w.model_dump() for w in event.warnings],
            reason=event.reason.model_dump() if refused else None,
            received_at=event.received_at,
            finished_at=event.received_at if refused else None,
            mapping=event.mapping.model_dump() if event.mapping else None,
            retry_of=event.retry_of,
            kind=event.kind.value,
            undo_of=event.undo_of,
            **dict.fromkeys(_COUNTS, 0),
        )
        # A refused file counts nothing, whatever stray rows were counted before; an accepted one
        # keeps its counts (settle recounts it anyway).
        columns = _UPLOADER_WORD + (_COUNTS if refused else ())
        statement = insert.values(values).on_conflict_do_update(
            index_elements=[import_jobs.c.id],
            set_={c: insert.excluded[c] for c in columns},
            where=_awaiting_uploader(),
        )
        await conn.execute(statement)
    return touched


async def _first_word_of_request(conn: AsyncConnection, event: JobRepeated, now: datetime) -> bool:
    """Whether this job.repeated is the first for its request (one without a request always is)."""
    if event.request is None:
        return True
    insert = insert_for(conn.dialect.name, job_repeats).on_conflict_do_nothing()
    result = await conn.execute(insert.values(job_id=event.job_id, request=event.request, seen_at=now))
    return result.rowcount == 1


async def overdue(conn: AsyncConnection, deadline: datetime) -> list[str]:
    """Jobs still unfinished that started before the deadline."""
    query = select(import_jobs.c.id).where(
        import_jobs.c.status.in_(_RUNNING),
        import_jobs.c.received_at < deadline,
    )
    return list((await conn.execute(query)).scalars())


async def fail(conn: AsyncConnection, job_ids: Sequence[str], reason: Issue, now: datetime) -> None:
    await conn.execute(
        update(import_jobs)
        .where(import_jobs.c.id.in_(job_ids), import_jobs.c.status.in_(_RUNNING))
        .values(status=JobStatus.FAILED.value, reason=reason.model_dump(), finished_at=now)
    )


async def record_callback(conn: AsyncConnection, job_id: str, outcome: str) -> None:
    await conn.execute(update(import_jobs).where(import_jobs.c.id == job_id).values(callback_outcome=outcome[:500]))


async def record_rows(conn: AsyncConnection, events: Iterable[RowsRejected | RowsWritten]) -> set[str]:
    """Count each record of rows once; keep the detail of rejected rows for reports."""
    fresh = await _unseen(conn, {(e.job_id, _first_row(e)): e for e in events if _rows(e)})
    parts, rejected = [], []
    for (job_id, first_row), event in fresh.items():
        tally = Counter(r.outcome.value for r in _rows(event)) if isinstance(event, RowsWritten) else {
            Outcome.REJECTED.value: len(event.rows)
        }
        parts.append(dict(job_id=job_id, first_row=first_row, **{o.value: tally.get(o.value, 0) for o in Outcome}))
        rejected += [
            dict(job_id=job_id, row=r.row, line=r.line, outcome=Outcome.REJECTED.value,
                 email=getattr(r, "email", None), client_id=None, username=None,
                 errors=[e.model_dump() for e in r.errors], original=r.original)
            for r in _rows(event)
            if not isinstance(r, RowResult) or r.outcome is Outcome.REJECTED
        ]
    await execute_many(conn, insert_for(conn.dialect.name, job_parts).on_conflict_do_nothing(), parts)
    await execute_many(conn, insert_for(conn.dialect.name, job_rows).on_conflict_do_nothing(), rejected)
    return {job_id for job_id, _ in fresh}


def _rows(event: RowsRejected | RowsWritten) -> tuple:
    return event.rows if isinstance(event, RowsRejected) else event.results


def _first_row(event: RowsRejected | RowsWritten) -> int:
    return min(r.row for r in _rows(event))


async def _unseen(conn: AsyncConnection, keyed: dict[tuple[str, int], object]) -> dict:
    """The records not counted before (nor twice in this batch)."""
    by_job: dict[str, list[int]] = {}
    for job_id, first_row in keyed:
        by_job.setdefault(job_id, []).append(first_row)
    seen: set[tuple[str, int]] = set()
    for job_id, rows in by_job.items():
        query = select(job_parts.c.first_row).where(job_parts.c.job_id == job_id, job_parts.c.first_row.in_(rows))
        seen.update((job_id, r) for r in (await conn.execute(query)).scalars())
    return {key: event for key, event in keyed.items() if key not in seen}


async def settle(conn: AsyncConnection, job_ids: Sequence[str], now: datetime) -> list[JobState]:
    """Recount the touched jobs from their counted records and move their status on.

    A job with no row yet (its rows came before its job.accepted, and no API row) is left out: its
    records wait in job_parts, and are all counted when its job.accepted touches it."""
    states: list[JobState] = []
    for part in (job_ids[i : i + _SLICE] for i in range(0, len(job_ids), _SLICE)):
        jobs = {r["id"]: r for r in (await conn.execute(select(import_jobs).where(import_jobs.c.id.in_(part)))).mappings()}
        sums = [func.coalesce(func.sum(job_parts.c[o.value]), 0).label(o.value) for o in Outcome]
        query = select(job_parts.c.job_id, *sums).where(job_parts.c.job_id.in_(part)).group_by(job_parts.c.job_id)
        tallies = {r["job_id"]: {o.value: r[o.value] for o in Outcome} for r in (await conn.execute(query)).mappings()}
        for job_id, job in jobs.items():
            states.append(await _settle_one(conn, job, tallies.get(job_id, {}), now))
    return states


async def _settle_one(conn: AsyncConnection, job, tally: dict[str, int], now: datetime) -> JobState:
    current = JobStatus(job["status"])
    if current.is_final:
        counts = JobCounts() if current is JobStatus.REJECTED else aggregate.count(tally, job["total"])
        return JobState(job["id"], current, counts, notify=job["notified_at"] is None)
    counts = aggregate.count(tally, job["total"])
    status = aggregate.advance(current, aggregate.status_of(job["total"], counts, job["dry_run"]))
    await conn.execute(
        update(import_jobs)
        .where(import_jobs.c.id == job["id"])
        .values(
            status=status.value,
            **{name: getattr(counts, name) for name in _COUNTS},
            finished_at=now if status.is_final else None,
        )
    )
    if status.is_final and job["undo_of"] and status is not JobStatus.FAILED:
        await _mark_undone(conn, job["undo_of"], job["id"], now)
    return JobState(job["id"], status, counts, notify=status.is_final, ended=status.is_final)


async def _mark_undone(conn: AsyncConnection, undo_of: str, undo_job_id: str, now: datetime) -> None:
    """The undone import's document says by which job and when (once: the first undo to end keeps it)."""
    await conn.execute(update(import_jobs).where(import_jobs.c.id == undo_of, import_jobs.c.undone_by.is_(None))
                       .values(undone_by=undo_job_id, undone_at=now))


async def notification_for(conn: AsyncConnection, state: JobState, first_errors: int) -> ImportNotification:
    job = (await conn.execute(select(import_jobs).where(import_jobs.c.id == state.job_id))).mappings().one()
    if state.status is JobStatus.REJECTED:
        # The file was refused whole: rows counted for it by mistake are not its errors.
        return aggregate.notification(job, state.counts, ())
    return aggregate.notification(job, state.counts, await jobs.first_errors(conn, state.job_id, first_errors))


async def callbacks(conn: AsyncConnection, job_ids: Sequence[str]) -> dict[str, str]:
    if not job_ids:
        return {}
    query = select(import_jobs.c.id, import_jobs.c.callback_url).where(
        import_jobs.c.id.in_(job_ids), import_jobs.c.callback_url.is_not(None)
    )
    return {r.id: r.callback_url for r in await conn.execute(query)}


async def received(conn: AsyncConnection, job_ids: Sequence[str]) -> dict[str, datetime]:
    """When each job's request came in (for the request-to-notification time)."""
    if not job_ids:
        return {}
    query = select(import_jobs.c.id, import_jobs.c.received_at).where(import_jobs.c.id.in_(job_ids))
    return {r.id: as_utc(r.received_at) for r in await conn.execute(query)}


async def mark_notified(conn: AsyncConnection, job_ids: Sequence[str], now: datetime) -> None:
    if job_ids:
        await conn.execute(update(import_jobs).where(import_jobs.c.id.in_(job_ids)).values(notified_at=now))
        await forget_notices(conn, job_ids)


async def notices_under_way(conn: AsyncConnection, job_ids: Sequence[str]) -> dict[str, dict[int, int]]:
    """The jobs whose notification may have been published already, each with where the notifications
    topic ended just before (partition -> offset)."""
    if not job_ids:
        return {}
    query = select(notices.c.job_id, notices.c.topic_ends).where(
        notices.c.job_id.in_(job_ids))
    return {r.job_id: {int(p): int(o) for p, o in r.topic_ends.items()} for r in await conn.execute(query)}


async def note_notices(conn: AsyncConnection, job_ids: Sequence[str], topic_ends: dict[int, int], now: datetime) -> None:
    """Before the jobs' notifications are first published: where the topic ends. A note already there
    (another notifier's, a moment before) is kept."""
    rows = [dict(job_id=j, topic_ends={str(p): o for p, o in topic_ends.items()}, started_at=now) for j in job_ids]
    await execute_many(conn, insert_for(conn.dialect.name, notices).on_conflict_do_nothing(), rows)


async def forget_notices(conn: AsyncConnection, job_ids: Sequence[str]) -> None:
    if job_ids:
        await conn.execute(notices.delete().where(notices.c.job_id.in_(job_ids)))
