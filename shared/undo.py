"""Undoing an import: when it may be undone, decided once for every front door (the API answers with it
at once, the uploader decides with it for every request, the topic's included).

An import may be undone once, after it ended, while the values it overwrote are kept (UNDO_RETENTION_DAYS),
when it wrote something: by our API or CLI (signed requests), or on the topic by its own requester if it
came on the topic (`undo_not_allowed` otherwise). An undo is itself a job (kind `undo`, `undo_of` the
import); the writers do its work (services/writer/undo.py), the notifier counts it.
"""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .db import as_utc, insert_for
from .events import Issue, JobKind, JobStatus, Source
from .jobs import RUNNING
from .tables import client_changes, import_jobs, job_parts, undo_claims

__all__ = ["UndoState", "undo_state", "undo_of", "acts_for", "refusal", "claim", "HTTP_STATUS"]

# How the API answers each refusal (the topic answers with a rejected notification of the same code).
HTTP_STATUS = {"unknown_import": 404, "undo_not_allowed": 403, "not_finished": 409, "already_undone": 409, "nothing_to_undo": 409,
               "too_old": 409}


class UndoState(NamedTuple):
    """What is known of the import to undo: its job row (None: unknown), the undo that took it (if any),
    and how many of its rows have their changes recorded."""

    job: Mapping | None
    undone_by: str | None
    recorded: int
    answered: int | None = None  # of a failed import: its rows the notifier counted (a result for each)
    # An undo of it taken by the API and still running (not yet claimed by an uploader): the earliest.
    pending: str | None = None


async def undo_state(conn: AsyncConnection, undo_of: str) -> UndoState:
    job = (await conn.execute(select(import_jobs).where(import_jobs.c.id == undo_of))).mappings().one_or_none()
    if job is None:
        return UndoState(None, None, 0)
    claimed = await conn.scalar(select(undo_claims.c.job_id).where(undo_claims.c.undo_of == undo_of))
    recorded = await conn.scalar(select(func.count()).select_from(client_changes).where(client_changes.c.job_id == undo_of))
    answered = None
    if job["status"] == JobStatus.FAILED:  # its counts stopped at its deadline: its rows may still come since
        parts = job_parts.c
        answered = await conn.scalar(select(func.coalesce(func.sum(parts.created + parts.updated + parts.unchanged
                                                                   + parts.rejected), 0)).where(parts.job_id == undo_of))
    running = [status.value for status in RUNNING]
    pending = await conn.scalar(select(import_jobs.c.id).where(import_jobs.c.undo_of == undo_of, import_jobs.c.status.in_(running))
                                .order_by(import_jobs.c.received_at, import_jobs.c.id).limit(1))
    return UndoState(job, claimed or job["undone_by"], recorded or 0, answered, pending)


async def undo_of(conn: AsyncConnection, undo_job_id: str) -> str | None:
    """The import an undo job (by its id) takes back; None when there is no such undo yet."""
    return await conn.scalar(select(import_jobs.c.undo_of).where(import_jobs.c.id == undo_job_id))


def acts_for(job: Mapping, requested_by: str | None) -> bool:
    """An unsigned request (on the topic: `requested_by` is its own word) acts only for its own requester's
    imports sent on the topic; what came through our API, page or CLI is theirs alone to act on."""
    return requested_by == job["requested_by"] and (job["source"] or Source.TOPIC) == Source.TOPIC


def refusal(state: UndoState, undo_job_id: str | None, now: datetime, retention_days: float,
            requested_by: str | None = None, trusted: bool = True) -> Issue | None:
    """Why the import cannot be undone (by `undo_job_id`, which may be the undo that took it: a request
    delivered again), or None. `trusted`: the request is signed by our API or CLI (shared/jobs.py), which act
    for anyone; else it came on the topic from `requested_by`, who may undo only its own topic imports."""
    job = state.job
    if job is None:
        return Issue(code="unknown_import", message="There is no import with that id.")
    if not trusted and not acts_for(job, requested_by):
        return Issue(code="undo_not_allowed", message=(
            "An undo on the topic must come from the import's own requester (requested_by), for an import sent on "
            "the topic: undo others through the API or `clients-import undo`."))
    if (job["kind"] or JobKind.IMPORT) == JobKind.UNDO:
        return Issue(code="nothing_to_undo", message="That job is an undo: an undo cannot be undone.")
    if state.undone_by is not None and state.undone_by != undo_job_id:
        return Issue(code="already_undone", message=f"That import was already undone (by job {state.undone_by}).")
    if state.pending is not None and state.pending != undo_job_id:
        # Two undos sent at once both passed the check above before either was claimed (an uploader claims).
        # A pending undo ends at the job deadline at the latest, so this refusal does not outlive it.
        return Issue(code="already_undone", message=f"That import is being undone (by job {state.pending}).")
    if not JobStatus(job["status"]).is_final:
        return Issue(code="not_finished", message="That import is still running: wait for its notification, then undo it.")
    if state.answered is not None and job["total"] is not None and state.answered < job["total"]:
        # Rows of it still on their way would be written after the undo took back the others, and counted
        # beyond its total: the undo waits until every row has its result (dead letters redriven).
        return Issue(code="not_finished", message=(
            f"That import failed with {job['total'] - state.answered} of its {job['total']} rows without a result: "
            "they may still be written. Undo it once they are (redrive its dead letters: clients-import dlq redrive)."))
    if job["dry_run"] or job["status"] == JobStatus.REJECTED:
        return Issue(code="nothing_to_undo", message="That import wrote nothing (a dry run, or a file rejected whole).")
    ended = as_utc(job["finished_at"] or job["received_at"])
    if ended < now - timedelta(days=retention_days):
        return Issue(code="too_old", message=(f"That import ended more than {retention_days:g} days ago "
                                              "(UNDO_RETENTION_DAYS): what it overwrote is no longer kept."))
    if not state.recorded:
        if (job["created"] or 0) + (job["updated"] or 0):
            return Issue(code="too_old", message="That import ran before undo existed: what it overwrote was not kept.")
        return Issue(code="nothing_to_undo", message="That import created and updated no client: there is nothing to undo.")
    return None


async def claim(conn: AsyncConnection, undo_of: str, undo_job_id: str) -> str:
    """Bind the import to this undo unless another took it first; the undo that holds it."""
    insert = insert_for(conn.dialect.name, undo_claims).on_conflict_do_nothing(index_elements=[undo_claims.c.undo_of])
    await conn.execute(insert.values(undo_of=undo_of, job_id=undo_job_id, claimed_at=datetime.now(UTC)))
    return await conn.scalar(select(undo_claims.c.job_id).where(undo_claims.c.undo_of == undo_of))
