"""Job accounting: from the counted rows of a job to its status, its progress and its notification."""

from collections.abc import Mapping

from shared import jobs
from shared.db import as_utc
from shared.events import (
    AppliedMapping,
    ImportNotification,
    Issue,
    JobCounts,
    JobKind,
    JobStatus,
    Outcome,
    RowError,
    Source,
)
from shared.jobs import can_move


def count(outcomes: Mapping[str, int], total: int | None) -> JobCounts:
    """Counts by outcome; every row ends in exactly one of them."""
    return JobCounts(total=total or 0, **{o.count: outcomes.get(o, 0) or 0 for o in Outcome})


def status_of(total: int | None, counts: JobCounts, dry_run: bool) -> JobStatus:
    """What the counted rows say. An unknown total (job.accepted not read yet) never ends a job:
    rows may overtake their job.accepted, which comes from another topic."""
    if total is None:
        return JobStatus.PROCESSING if counts.processed else JobStatus.RECEIVED
    if counts.processed < total:
        return JobStatus.PROCESSING
    if dry_run:
        return JobStatus.VALIDATED
    return JobStatus.COMPLETED_WITH_ERRORS if counts.rejected or counts.conflicts else JobStatus.COMPLETED


def advance(current: JobStatus, proposed: JobStatus) -> JobStatus:
    """A status moves only forward (shared.jobs.TRANSITIONS), and a final one is kept: events that
    arrive late or twice must not undo what was already announced."""
    return proposed if can_move(current, proposed) else current


first_errors = jobs.quote_errors  # the one rule for which errors a notification quotes


def progress_due(last_sent: float | None, now: float, interval: float, final: bool) -> bool:
    """A few progress events a second per job, and always the last one."""
    return final or last_sent is None or now - last_sent >= interval


def notification(job: Mapping, counts: JobCounts, errors: tuple[RowError, ...]) -> ImportNotification:
    reason = job.get("reason")
    return ImportNotification(
        job_id=job["id"],
        file_name=job["file_name"],
        status=JobStatus(job["status"]),
        total=counts.total,
        created=counts.created,
        updated=counts.updated,
        unchanged=counts.unchanged,
        rejected=counts.rejected,
        dry_run=bool(job["dry_run"]),
        reason=Issue(**reason) if reason else None,
        errors=errors,
        warnings=tuple(Issue(**w) for w in job.get("warnings") or ()),
        requested_by=job["requested_by"],
        source=Source(job["source"]),
        finished_at=as_utc(job["finished_at"]),
        mapping=AppliedMapping(**job["mapping"]) if job.get("mapping") else None,
        retry_of=job.get("retry_of"),
        kind=JobKind(job.get("kind") or JobKind.IMPORT),
        undo_of=job.get("undo_of"),
        deleted=counts.deleted,
        restored=counts.restored,
        conflicts=counts.conflicts,
    )
