"""Job accounting: counts, status, the errors quoted, progress pacing and the notification."""

from datetime import UTC, datetime

import pytest

from services.notifier.aggregate import advance, count, first_errors, notification, progress_due, status_of
from shared.events import JobCounts, JobStatus, Outcome, RowError, Source


def test_counts_are_taken_by_outcome_and_missing_outcomes_are_zero():
    counts = count({Outcome.CREATED: 3, "rejected": 2}, total=7)

    assert counts == JobCounts(total=7, created=3, updated=0, unchanged=0, rejected=2)
    assert counts.processed == 5


def test_a_job_whose_total_is_not_known_yet_counts_zero_total():
    assert count({}, None) == JobCounts()


@pytest.mark.parametrize(
    "total, counts, dry_run, status",
    [
        (None, JobCounts(), False, JobStatus.RECEIVED),
        (None, JobCounts(created=3), False, JobStatus.PROCESSING),
        (None, JobCounts(created=3), True, JobStatus.PROCESSING),
        (0, JobCounts(), False, JobStatus.COMPLETED),
        (5, JobCounts(total=5, created=4), False, JobStatus.PROCESSING),
        (5, JobCounts(total=5, created=4, rejected=0), True, JobStatus.PROCESSING),
        (5, JobCounts(total=5, created=2, updated=2, unchanged=1), False, JobStatus.COMPLETED),
        (5, JobCounts(total=5, created=4, rejected=1), False, JobStatus.COMPLETED_WITH_ERRORS),
        (5, JobCounts(total=5, rejected=5), False, JobStatus.COMPLETED_WITH_ERRORS),
        (5, JobCounts(total=5, created=5), True, JobStatus.VALIDATED),
        (5, JobCounts(total=5, created=3, rejected=2), True, JobStatus.VALIDATED),
    ],
)
def test_status_is_processing_until_every_row_is_counted(total, counts, dry_run, status):
    assert status_of(total, counts, dry_run) is status


def test_rows_that_overtake_their_job_accepted_never_end_the_job():
    # job.accepted (with the total) may come after every row of the job: until then it is not done.
    assert status_of(None, JobCounts(created=1000, rejected=5), dry_run=False) is JobStatus.PROCESSING


FINAL = [s for s in JobStatus if s.is_final]


@pytest.mark.parametrize(
    "current, proposed, kept",
    [
        (JobStatus.RECEIVED, JobStatus.RECEIVED, JobStatus.RECEIVED),
        (JobStatus.RECEIVED, JobStatus.PROCESSING, JobStatus.PROCESSING),
        (JobStatus.RECEIVED, JobStatus.COMPLETED, JobStatus.COMPLETED),
        (JobStatus.PROCESSING, JobStatus.RECEIVED, JobStatus.PROCESSING),
        (JobStatus.PROCESSING, JobStatus.VALIDATED, JobStatus.VALIDATED),
        *[(final, proposed, final) for final in FINAL for proposed in JobStatus],
    ],
)
def test_a_status_only_moves_forward_and_a_final_one_is_kept(current, proposed, kept):
    assert advance(current, proposed) is kept


def issue(code: str, field: str | None = "email") -> dict:
    return {"code": code, "message": f"{code} message", "field": field}


def test_the_first_errors_come_in_row_order_up_to_the_limit():
    rejected = [(7, 9, [issue("invalid_email")]), (2, 3, [issue("missing_first_name", "firstName"),
                                                          issue("invalid_type", "type")]), (4, 4, [issue("x", None)])]

    errors = first_errors(rejected, limit=3)

    assert errors == (
        RowError(row=2, line=3, field="firstName", code="missing_first_name", message="missing_first_name message"),
        RowError(row=2, line=3, field="type", code="invalid_type", message="invalid_type message"),
        RowError(row=4, line=4, field=None, code="x", message="x message"),
    )


@pytest.mark.parametrize("limit, expected", [(0, 0), (1, 1), (2, 2), (5, 3), (100, 3)])
def test_no_more_errors_than_the_limit_are_quoted(limit: int, expected: int):
    rejected = [(1, 2, [issue("a")]), (2, 3, [issue("b"), issue("c")])]
    assert len(first_errors(rejected, limit)) == expected


@pytest.mark.parametrize(
    "last_sent, now, final, due",
    [
        (None, 10.0, False, True),
        (10.0, 10.1, False, False),
        (10.0, 10.25, False, True),
        (10.0, 11.0, False, True),
        (10.0, 10.01, True, True),
    ],
)
def test_progress_is_sent_a_few_times_a_second_and_always_at_the_end(last_sent, now, final, due):
    assert progress_due(last_sent, now, interval=0.25, final=final) is due


FINISHED = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def job(**fields) -> dict:
    return {"id": "job-1", "file_name": "clients.csv", "status": "completed", "dry_run": False, "reason": None,
            "warnings": [], "requested_by": "ops", "source": "api", "finished_at": FINISHED, **fields}


def test_a_notification_carries_the_counts_errors_and_warnings_of_the_job():
    errors = (RowError(row=2, line=3, field="email", code="invalid_email", message="bad"),)
    counts = JobCounts(total=6, created=3, updated=1, unchanged=1, rejected=1)

    note = notification(job(status="completed_with_errors", warnings=[{"code": "delimiter", "message": "m"}]),
                        counts, errors)

    assert (note.job_id, note.file_name, note.status, note.requested_by, note.source) == (
        "job-1", "clients.csv", JobStatus.COMPLETED_WITH_ERRORS, "ops", Source.API)
    assert (note.total, note.created, note.updated, note.unchanged, note.rejected) == (6, 3, 1, 1, 1)
    assert note.errors == errors
    assert [w.code for w in note.warnings] == ["delimiter"]
    assert note.finished_at == FINISHED and note.reason is None and note.dry_run is False


def test_a_completed_import_is_summed_up_in_plain_words():
    note = notification(job(), JobCounts(total=6, created=3, updated=1, unchanged=1, rejected=1), ())
    assert note.message == "clients.csv imported: 3 created, 1 updated, 1 unchanged, 1 rejected."


def test_a_dry_run_says_what_would_be_done():
    note = notification(job(status="validated", dry_run=True), JobCounts(total=3, created=2, rejected=1), ())
    assert note.message == "clients.csv checked, nothing written: 2 would be created, 0 would be updated, 0 unchanged, 1 rejected."


def test_a_rejected_file_says_why():
    reason = {"code": "excel_workbook", "message": "This is an Excel workbook.", "field": None}

    note = notification(job(status="rejected", reason=reason), JobCounts(), ())

    assert note.reason.code == "excel_workbook"
    assert note.message == "clients.csv was not imported: This is an Excel workbook."


def test_a_failed_job_says_it_failed():
    assert notification(job(status="failed"), JobCounts(), ()).message == "clients.csv could not be imported: the import did not finish."
