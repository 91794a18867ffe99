"""What a retry may fix is read from the ledgers and bound when the uploader first takes it. On each backend."""

import uuid
from datetime import UTC, datetime

from services.uploader.app import UploaderPorts
from shared import retries
from shared.db import insert_for
from shared.settings import Settings
from shared.tables import import_jobs, job_rows, row_outcomes


async def an_import(db, rejected: list[int], total: int = 6, **job) -> str:
    job_id = str(uuid.uuid4())
    async with db.begin() as conn:
        await conn.execute(insert_for(conn.dialect.name, import_jobs).values(
            id=job_id, file_name="people.csv", source="topic", requested_by="acme", mode="upsert", dry_run=False,
            status="completed_with_errors", total=total, rejected=len(rejected), received_at=datetime.now(UTC),
            **job))
        for row in rejected:
            await conn.execute(insert_for(conn.dialect.name, job_rows).values(
                job_id=job_id, row=row, line=row + 1, outcome="rejected",
                errors=[{"field": "email", "code": "invalid_email", "message": "bad"}],
                original={"firstName": f"P{row}", "email": "bad@"}))
    return job_id


async def written(db, job_id: str, rows: dict[int, str]) -> None:
    async with db.begin() as conn:
        for row, outcome in rows.items():
            await conn.execute(insert_for(conn.dialect.name, row_outcomes).values(
                job_id=job_id, row=row, line=row + 1, email=f"p{row}@x.com", outcome=outcome))


async def test_a_retry_may_fix_what_is_still_rejected_and_keeps_that_when_taken_again(db):
    ports = UploaderPorts.open(Settings(_env_file=None), db)
    original = await an_import(db, [2, 4, 5])
    first, second = str(uuid.uuid4()), str(uuid.uuid4())

    basis = await ports.retry_basis(first, original, "acme", False)
    assert basis.refusal is None and basis.retryable == {2, 4, 5}
    assert basis.original.header == ["firstName", "email"] and basis.original.rejected[4].line == 5

    await written(db, first, {2: "created", 4: "rejected"})  # the first retry fixed row 2, not row 4
    assert (await ports.retry_basis(first, original, "acme", False)).retryable == {2, 4, 5}, "bound when first taken"
    later = await ports.retry_basis(second, original, "acme", False)
    assert later.retryable == {4, 5} and later.original.fixed == {2}

    async with db.connect() as conn:
        assert await retries.fixed_rows(conn, original) == {2}


async def test_a_retry_of_a_retry_belongs_to_the_first_import_and_refusals_are_bound_too(db):
    ports = UploaderPorts.open(Settings(_env_file=None), db)
    original = await an_import(db, [3])
    retry = await an_import(db, [], total=1, retry_of=original)

    basis = await ports.retry_basis(str(uuid.uuid4()), retry, "acme", False)
    assert basis.original.job_id == original and basis.retryable == {3}

    outsider = str(uuid.uuid4())
    assert (await ports.retry_basis(outsider, original, "intruder", False)).refusal.code == "retry_not_allowed"
    assert (await ports.retry_basis(outsider, original, "acme", True)).refusal.code == "retry_not_allowed"
    assert (await ports.retry_basis(str(uuid.uuid4()), "no-such-job", "acme", False)).refusal.code == "unknown_import"


async def a_retry(db, ports, original: str, tried: dict[int, str], status: str = "completed_with_errors") -> str:
    """A retry taken by the uploader that ended with these rows rejected again, as tried (row -> email)."""
    retry = str(uuid.uuid4())
    await ports.retry_basis(retry, original, "acme", False)
    async with db.begin() as conn:
        await conn.execute(insert_for(conn.dialect.name, import_jobs).values(
            id=retry, file_name="fixes.csv", source="api", requested_by="acme", mode="upsert", dry_run=False,
            status=status, total=len(tried), rejected=len(tried), received_at=datetime.now(UTC), retry_of=original))
        for row, email in tried.items():
            await conn.execute(insert_for(conn.dialect.name, job_rows).values(
                job_id=retry, row=row, line=row + 1, outcome="rejected", original={"firstName": "", "email": email},
                errors=[{"field": "firstName", "code": "missing_first_name", "message": "empty"}]))
    return retry


async def test_a_row_left_rejected_by_a_retry_starts_the_next_from_what_was_last_tried(db):
    ports = UploaderPorts.open(Settings(_env_file=None), db)
    original = await an_import(db, [2, 4])
    first = await a_retry(db, ports, original, {4: "p4@x.com"})
    running = await a_retry(db, ports, original, {2: "p2@running.com"}, status="processing")  # not ended: not yet

    taken = str(uuid.uuid4())
    basis = await ports.retry_basis(taken, original, "acme", False)
    assert basis.original.rejected[4].values == {"firstName": "", "email": "p4@x.com"}
    assert basis.original.rejected[4].errors[0]["code"] == "missing_first_name"
    assert basis.original.rejected[2].values == {"firstName": "P2", "email": "bad@"} and running

    await a_retry(db, ports, original, {4: "newer@x.com"})  # tried again since: the plan taken keeps its start
    again = await ports.retry_basis(taken, original, "acme", False)
    assert again.original.rejected[4].values["email"] == "p4@x.com" and again.original.rejected[4].source == first
    async with db.connect() as conn:
        assert (await retries.load_original(conn, original)).rejected[4].values["email"] == "newer@x.com"
