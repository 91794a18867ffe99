"""The notifier's accounting does not depend on the order a job's events arrive in.

job.accepted, rows.rejected and rows.written come on three topics (and several partitions), at
least once each, so a job's rows may overtake its job.accepted, and any record may come again,
in the same consumed batch or a later one. Whatever the order, a job must end with the same
counts, the same status, and exactly one notification. Each test runs on SQLite and PostgreSQL.
"""

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.notifier import ledger
from shared.events import (
    IMPORT_OUTCOMES,
    ImportNotification,
    ImportOptions,
    ImportRequest,
    Issue,
    JobAccepted,
    JobCounts,
    JobOverdue,
    JobRefused,
    JobRepeated,
    JobStatus,
    Outcome,
    RejectedRow,
    RowResult,
    RowsRejected,
    RowsWritten,
    Source,
)
from shared.jobs import record_received
from shared.tables import import_jobs

INVALID = "invalid"  # a row the validator refused; the others are the writer's outcomes
FATES = (INVALID, *IMPORT_OUTCOMES)
NOW = datetime(2030, 1, 1, tzinfo=UTC)


# --- a job's events, split the way the services split them ---------------------------------------


def accepted(job_id: str, total: int, dry_run: bool = False) -> JobAccepted:
    return JobAccepted(job_id=job_id, file_name="f.csv", source=Source.API, requested_by="t",
                       options=ImportOptions(dry_run=dry_run), total=total, chunks=1)


def refused(job_id: str) -> JobRefused:
    return JobRefused(job_id=job_id, file_name="f.csv", source=Source.API, requested_by="t",
                      reason=Issue(code="excel_workbook", message="This is an Excel workbook."))


def invalid_row(row: int) -> RejectedRow:
    return RejectedRow(row=row, line=row + 1, errors=(Issue(code="invalid_email", message="m", field="email"),),
                       original={"email": "nope"})


def result(row: int, outcome: Outcome) -> RowResult:
    errors = (Issue(code="username_taken", message="m", field="username"),) if outcome is Outcome.REJECTED else ()
    return RowResult(row=row, line=row + 1, outcome=outcome, email=f"r{row}@x.com", client_id=f"c{row}", errors=errors)


def row_records(job_id: str, fates: list[str], chunk_rows: int, partitions: list[int]) -> list[RowsRejected | RowsWritten]:
    """Per chunk: one RowsRejected for the rows the validator refused (validator/routing.py), and one
    RowsWritten per RowsAccepted record, i.e. per partition the chunk's valid rows went to (writer/app.py)."""
    records: list[RowsRejected | RowsWritten] = []
    for index, start in enumerate(range(0, len(fates), chunk_rows)):
        rows = range(start + 1, min(start + chunk_rows, len(fates)) + 1)
        refused_rows = tuple(invalid_row(r) for r in rows if fates[r - 1] == INVALID)
        if refused_rows:
            records.append(RowsRejected(job_id=job_id, chunk=index, rows=refused_rows))
        for partition in sorted({partitions[r - 1] for r in rows}):
            results = tuple(result(r, Outcome(fates[r - 1])) for r in rows
                            if fates[r - 1] != INVALID and partitions[r - 1] == partition)
            if results:
                records.append(RowsWritten(job_id=job_id, results=results))
    return records


def expected_end(fates: list[str], dry_run: bool) -> tuple[JobStatus, JobCounts]:
    tally = Counter(Outcome.REJECTED if f == INVALID else Outcome(f) for f in fates)
    counts = JobCounts(total=len(fates), **{o.value: tally[o] for o in IMPORT_OUTCOMES})
    if dry_run:
        return JobStatus.VALIDATED, counts
    return (JobStatus.COMPLETED_WITH_ERRORS if counts.rejected else JobStatus.COMPLETED), counts


# --- the notifier's handling of one consumed batch ------------------------------------------------


@dataclass
class Announced:
    """What the notifier said about one job over all batches."""

    states: list[ledger.JobState]
    notes: list[ImportNotification]


async def apply(db, batch: list, announced: Announced | None = None) -> list[ledger.JobState]:
    """One consumed batch as the notifier applies it: record_jobs, record_rows and settle in one
    transaction; then, as its announcement does, the notification of each state to notify, and
    those jobs marked notified."""
    jobs = [e for e in batch if isinstance(e, JobAccepted | JobRefused | JobRepeated | JobOverdue)]
    rows = [e for e in batch if isinstance(e, RowsRejected | RowsWritten)]
    async with db.begin() as conn:
        touched = await ledger.record_jobs(conn, jobs, NOW) | await ledger.record_rows(conn, rows)
        states = await ledger.settle(conn, sorted(touched), NOW)
    due = [s for s in states if s.notify]
    notes = []
    if due:
        async with db.begin() as conn:
            notes = [await ledger.notification_for(conn, s, 20) for s in due]
            await ledger.mark_notified(conn, [s.job_id for s in due], NOW)
    if announced is not None:
        announced.states += states
        announced.notes += notes
    return states


async def api_received(db, job_id: str, dry_run: bool = False) -> None:
    """The API records the job as 'received' before it publishes the request."""
    request = ImportRequest(file_name="f.csv", source=Source.API, requested_by="t", content="email\n",
                            options=ImportOptions(dry_run=dry_run), job_id=job_id)
    async with db.begin() as conn:
        await record_received(conn, job_id, request)


async def job_row(db, job_id: str) -> dict | None:
    async with db.connect() as conn:
        found = (await conn.execute(select(import_jobs).where(import_jobs.c.id == job_id))).mappings().one_or_none()
    return dict(found) if found else None


async def stored_status(db, job_id: str) -> JobStatus | None:
    job = await job_row(db, job_id)
    return JobStatus(job["status"]) if job else None


def stored_counts(job: dict) -> JobCounts:
    return JobCounts(total=job["total"] or 0, **{o.count: job[o.count] for o in Outcome})


STAGE = {JobStatus.RECEIVED: 0, JobStatus.PROCESSING: 1}  # then any final status: 2


def moved_forward(before: JobStatus | None, after: JobStatus | None) -> bool:
    """received -> processing -> final, and a final status is kept (stated here, not taken from the code)."""
    if before is None:
        return True
    if before.is_final:
        return after is before
    return after is not None and STAGE.get(after, 2) >= STAGE[before]


# --- the exact bug: rows.written before job.accepted ----------------------------------------------


@pytest.mark.parametrize("api_row", [True, False], ids=["api-received-row", "no-job-row"])
async def test_rows_written_before_their_job_accepted_still_complete_the_job(db, api_row):
    job = str(uuid.uuid4())
    if api_row:
        await api_received(db, job)
    written = RowsWritten(job_id=job, results=(result(1, Outcome.CREATED), result(2, Outcome.UPDATED)))
    said = Announced([], [])

    early = await apply(db, [written], said)
    late = await apply(db, [accepted(job, total=2)], said)
    again = await apply(db, [written, accepted(job, total=2)], said)  # both redelivered later

    # With no job row there is nothing to settle yet; the rows are counted all the same.
    assert [(s.status, s.counts.processed, s.notify) for s in early] == (
        [(JobStatus.PROCESSING, 2, False)] if api_row else [])
    assert [(s.status, s.notify) for s in late] == [(JobStatus.COMPLETED, True)]
    assert [(s.status, s.notify) for s in again] == [(JobStatus.COMPLETED, False)]
    assert [(n.status, n.total, n.created, n.updated) for n in said.notes] == [(JobStatus.COMPLETED, 2, 1, 1)]
    stored = await job_row(db, job)
    assert (stored["status"], stored["total"], stored["created"], stored["updated"]) == ("completed", 2, 1, 1)
    async with db.connect() as conn:
        assert job not in await ledger.overdue(conn, NOW + timedelta(days=1))


@pytest.mark.parametrize("api_row", [True, False], ids=["api-received-row", "no-job-row"])
async def test_a_job_repeated_before_its_job_accepted_makes_no_job_and_loses_no_notification(db, api_row):
    job = str(uuid.uuid4())
    if api_row:
        await api_received(db, job)
    written = RowsWritten(job_id=job, results=(result(1, Outcome.CREATED),))
    said = Announced([], [])

    first = await apply(db, [JobRepeated(job_id=job)], said)
    after_repeat = await job_row(db, job)
    await apply(db, [written], said)
    await apply(db, [accepted(job, total=1)], said)

    # A job that is only 'received' stays so: nothing was counted for it yet.
    assert [(s.status, s.notify) for s in first] == ([(JobStatus.RECEIVED, False)] if api_row else [])
    if api_row:
        assert (after_repeat["status"], after_repeat["total"]) == ("received", None)
    else:
        assert after_repeat is None  # job.repeated only ever updates a job; it never makes one
    assert [(n.status, n.created) for n in said.notes] == [(JobStatus.COMPLETED, 1)]

    # Asked again once finished, the requester is told again (that is what job.repeated is for).
    assert [(s.status, s.notify) for s in await apply(db, [JobRepeated(job_id=job)])] == [(JobStatus.COMPLETED, True)]


async def test_a_job_refused_after_rows_were_counted_ends_rejected_and_counts_nothing(db):
    job = str(uuid.uuid4())
    await api_received(db, job)
    stray = RowsRejected(job_id=job, chunk=0, rows=(invalid_row(1),))
    said = Announced([], [])

    await apply(db, [stray], said)
    await apply(db, [refused(job)], said)
    await apply(db, [accepted(job, total=1), refused(job), stray], said)  # neither word reopens it

    assert [(n.status, n.total, n.rejected, n.errors) for n in said.notes] == [(JobStatus.REJECTED, 0, 0, ())]
    assert [s.status for s in said.states] == [JobStatus.PROCESSING, JobStatus.REJECTED, JobStatus.REJECTED]
    assert stored_counts(await job_row(db, job)) == JobCounts()


async def test_a_job_failed_at_its_deadline_is_not_reopened_by_a_late_job_accepted(db):
    job = str(uuid.uuid4())
    await api_received(db, job)
    await apply(db, [RowsWritten(job_id=job, results=(result(1, Outcome.CREATED),))])
    async with db.begin() as conn:
        await ledger.fail(conn, [job], Issue(code="deadline_exceeded", message="late"), NOW)
        failed = await ledger.settle(conn, [job], NOW)
        await ledger.mark_notified(conn, [job], NOW)

    late = await apply(db, [accepted(job, total=1)])

    assert [(s.status, s.notify) for s in failed] == [(JobStatus.FAILED, True)]
    assert [(s.status, s.notify) for s in late] == [(JobStatus.FAILED, False)]
    assert (await job_row(db, job))["status"] == "failed"


async def test_sweepers_saying_twice_that_a_job_is_overdue_and_a_late_row_give_one_failed_notification(db):
    """Sweepers only say so on the jobs topic; the consumer fails and announces: no race, one notification."""
    job = str(uuid.uuid4())
    await apply(db, [accepted(job, total=2), RowsWritten(job_id=job, results=(result(1, Outcome.CREATED),))])
    overdue = JobOverdue(job_id=job, reason=Issue(code="deadline_exceeded", message="late"))
    announced = Announced([], [])

    for batch in ([overdue], [overdue], [RowsWritten(job_id=job, results=(result(2, Outcome.CREATED),))]):
        await apply(db, batch, announced)

    assert [n.status for n in announced.notes] == [JobStatus.FAILED]
    assert announced.notes[0].reason.code == "deadline_exceeded"
    assert (await job_row(db, job))["status"] == "failed"


async def test_an_overdue_word_for_a_job_that_ended_changes_nothing(db):
    job = str(uuid.uuid4())
    await apply(db, [accepted(job, total=1), RowsWritten(job_id=job, results=(result(1, Outcome.CREATED),))])

    late = await apply(db, [JobOverdue(job_id=job, reason=Issue(code="deadline_exceeded", message="late"))])

    assert [(s.status, s.notify) for s in late] == [(JobStatus.COMPLETED, False)]


# --- any interleaving, any redeliveries, any cut into batches --------------------------------------


@dataclass(frozen=True)
class Scenario:
    fates: list[str]
    chunk_rows: int
    partitions: list[int]
    dry_run: bool
    api_row: bool
    picks: list[int]  # which record each delivery carries: all of them once, some again
    cuts: list[int]  # where one consumed batch ends and the next begins


@st.composite
def scenarios(draw) -> Scenario:
    total = draw(st.integers(0, 20))
    fates = draw(st.lists(st.sampled_from(FATES), min_size=total, max_size=total))
    chunk_rows = draw(st.integers(1, 6))
    partitions = draw(st.lists(st.integers(0, 2), min_size=total, max_size=total))
    records = 1 + len(row_records("x", fates, chunk_rows, partitions))  # job.accepted, then the rows
    again = draw(st.lists(st.integers(0, records - 1), max_size=records))
    picks = draw(st.permutations([*range(records), *again]))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(picks) - 1)), max_size=6)))
    return Scenario(fates, chunk_rows, partitions, draw(st.booleans()), draw(st.booleans()), picks, cuts)


def batches_of(scenario: Scenario, job_id: str) -> list[list]:
    records = [accepted(job_id, len(scenario.fates), scenario.dry_run),
               *row_records(job_id, scenario.fates, scenario.chunk_rows, scenario.partitions)]
    deliveries = [records[i] for i in scenario.picks]
    edges = [0, *(c for c in scenario.cuts if c < len(deliveries)), len(deliveries)]
    return [deliveries[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a]


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios())
async def test_any_order_of_a_jobs_events_ends_in_the_same_counts_status_and_one_notification(db, scenario):
    job = str(uuid.uuid4())  # examples share the database: each has its own job
    if scenario.api_row:
        await api_received(db, job, scenario.dry_run)
    status, counts = expected_end(scenario.fates, scenario.dry_run)
    said = Announced([], [])

    seen = JobStatus.RECEIVED if scenario.api_row else None
    for batch in batches_of(scenario, job):
        await apply(db, batch, said)
        current = await stored_status(db, job)
        assert moved_forward(seen, current), (seen, current)
        seen = current

    assert [s for s in said.states if s.notify] == [ledger.JobState(job, status, counts, notify=True)]
    assert [(n.status, n.total, n.created, n.updated, n.unchanged, n.rejected) for n in said.notes] == [
        (status, counts.total, counts.created, counts.updated, counts.unchanged, counts.rejected)]
    stored = await job_row(db, job)
    assert (JobStatus(stored["status"]), stored_counts(stored)) == (status, counts)
